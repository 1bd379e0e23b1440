"""`workbench report`: every figure holds exactly the numbers it was drawn from, the files
decode to the stated size, the tables carry the report's intervals, and bad input writes
nothing (engine/report/)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from engine.records.events import read_events
from engine.records.evidence import WORST
from engine.report import style
from engine.report.build import load_report, make_report
from engine.study import report as rp
from tests.report_fixtures import (
    COLUMNS,
    eval_doc,
    fake_run,
    study_rows,
    sweep_doc,
    write_json,
)


def steps_of(run: Path) -> list[dict]:
    return [e for e in read_events(run / "events.jsonl") if e["type"] == "step"]


def epochs_of(run: Path) -> list[dict]:
    return [e for e in read_events(run / "events.jsonl") if e["type"] == "epoch_end"]


def lines(fig) -> dict[str, tuple[list[float], list[float]]]:
    return {
        ln.get_gid(): (list(map(float, ln.get_xdata())), list(map(float, ln.get_ydata())))
        for ax in fig.axes
        for ln in ax.get_lines()
        if ln.get_gid()
    }


def band(fig, gid: str) -> set[tuple[float, float]]:
    """The vertices of a fill_between band: every (x, low) and (x, high) it was given."""
    coll = next(c for ax in fig.axes for c in ax.collections if c.get_gid() == gid)
    return {(round(float(x), 6), round(float(y), 6)) for x, y in coll.get_paths()[0].vertices}


def test_run_figures_hold_the_events_numbers(tmp_path):
    run = fake_run(tmp_path)
    steps, epochs = steps_of(run), epochs_of(run)
    with style.styled():
        rep = load_report(str(run), tmp_path)
        figs = {name: fig for name, (fig, _) in rep.figures.items()}
        assert list(figs) == ["loss", "l_foo-clean-vs-adversarial", "accuracy", "lr"]
        x = [float(e["step"]) for e in steps]
        loss = lines(figs["loss"])
        # the loss and the part no own plot claims; foo and bar live in the method's own plot
        assert set(loss) == {"loss", "ce"}
        assert loss["loss"] == (x, [e["loss"] for e in steps])
        assert loss["ce"] == (x, [e["parts"]["ce"] for e in steps])
        own = lines(figs["l_foo-clean-vs-adversarial"])
        assert own == {
            "foo": (x, [e["parts"]["foo"] for e in steps]),
            "bar": (x, [e["parts"]["bar"] for e in steps]),
        }
        labels = [
            t.get_text() for t in figs["l_foo-clean-vs-adversarial"].axes[0].get_legend().texts
        ]
        assert labels == ["L_foo clean", "L_foo adversarial"]  # the declared labels
        acc = lines(figs["accuracy"])
        ex = [float(e["epoch"]) for e in epochs]
        assert acc["clean_acc"] == (ex, [e["clean_acc"] for e in epochs])
        assert acc["robust_acc"] == (ex, [e["robust_acc"] for e in epochs])
        for which in ("clean", "robust"):
            want = {(float(e["epoch"]), b) for e in epochs for b in e[f"{which}_interval"]}
            assert want <= band(figs["accuracy"], f"{which}_acc_band")
        assert lines(figs["lr"])["lr"] == (x, [e["lr"] for e in steps])
        for fig in figs.values():
            style.close(fig)
    assert "damaged" in " ".join(rep.text) and "line 7" in " ".join(rep.text)


def test_own_plots_come_from_the_declaration_not_the_name(tmp_path):
    """The same events without a declaration (an older run): no own plot, every part in loss."""
    run = fake_run(tmp_path, damaged=False)
    text = (run / "events.jsonl").read_text().splitlines()
    first = json.loads(text[0])
    first["config"]["method"]["name"] = "atblr"  # the name alone draws nothing of ATBLR's
    del first["panels"]
    (run / "events.jsonl").write_text("\n".join([json.dumps(first), *text[1:]]) + "\n")
    with style.styled():
        rep = load_report(str(run), tmp_path)
        assert list(rep.figures) == ["loss", "accuracy", "lr"]
        assert set(lines(rep.figures["loss"][0])) == {"loss", "ce", "foo", "bar"}
        for fig, _ in rep.figures.values():
            style.close(fig)


def png_size(path: Path) -> tuple[int, int]:
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[12:16] == b"IHDR"
    return struct.unpack(">II", raw[16:24])


def test_png_decodes_to_the_column_width_and_md_embeds_it(tmp_path):
    run = fake_run(tmp_path)
    written = make_report(str(run), runs_dir=tmp_path)
    assert written.out == run / "report"
    png = run / "report" / "l_foo-clean-vs-adversarial.png"
    w, h = round(style.COLUMN_WIDTH * style.DPI), round(style.HEIGHT * style.DPI)
    assert png_size(png) == (w, h) == (990, 660)
    import matplotlib.image

    assert matplotlib.image.imread(png).shape[:2] == (h, w)  # it decodes
    md = (run / "report" / "report.md").read_text()
    for name in ("loss", "l_foo-clean-vs-adversarial", "accuracy", "lr"):
        assert f"]({name}.png)" in md and (run / "report" / f"{name}.png").is_file()
    assert "44.0% [31.0, 58.0] robust under PGD-20 at eps 0.3 (n = 50" in md


def test_evaluation_figures_and_sweep_bands(tmp_path):
    run = fake_run(tmp_path)
    best = run / "best.safetensors"
    table = dict(zip(COLUMNS, [97.5, 80.0, 70.0, 69.0, 72.0, 71.0, 66.0, 65.5], strict=True))
    ev = write_json(run / "eval" / "paper-1.json", eval_doc(best, table))
    sweep = sweep_doc(best)
    write_json(run / "eval" / "sweep-1.json", sweep)
    with style.styled():
        rep = load_report(str(ev), tmp_path)
        bars = {
            p.get_gid(): p.get_width()
            for p in rep.figures["eval-columns"][0].axes[0].patches
            if p.get_gid()
        }
        assert bars == table
        fig = rep.figures["eps-sweep"][0]
        assert lines(fig)["fake"] == (sweep["eps"], sweep["accuracy"])
        want = {(e, b) for e, ab in zip(sweep["eps"], sweep["intervals"], strict=True) for b in ab}
        assert want <= band(fig, "fake band")
        for f, _ in rep.figures.values():
            style.close(f)
    make_report(str(ev), runs_dir=tmp_path, formats=("svg", "pdf"))
    svg = (run / "eval" / "paper-1-report" / "eps-sweep.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and 'width="237.6pt"' in svg  # 3.3 in
    pdf = (run / "eval" / "paper-1-report" / "eps-sweep.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and b"/MediaBox [ 0 0 237.6 158.4 ]" in pdf
    assert rep.table.rows[0].cells[WORST].text() == "65.5 [62.5, 68.0]"
    assert rep.table.columns() == ["clean", "FGSM", "PGD-40", "PGD-100", "CW-40", WORST]


def study_doc(tmp_path: Path, grid: bool = False) -> dict:
    spec = {"name": "st", "suite": "paper"}
    return rp.build(spec, study_rows(tmp_path, grid))


def test_study_latex_has_one_row_per_arm_and_the_reports_intervals(tmp_path):
    doc = study_doc(tmp_path)
    path = write_json(tmp_path / "report.json", doc)
    written = make_report(str(path), out=tmp_path / "out", latex=True, markdown=True)
    tex = (tmp_path / "out" / "table.tex").read_text()
    body = tex.split("\\midrule\n")[1].split("\\bottomrule")[0].strip().splitlines()
    assert [r.split(" & ")[0] for r in body] == ["madry (3 seeds)", "atblr (3 seeds)"]
    assert (
        "\\toprule" in tex
        and "Clean & FGSM & PGD-40 & PGD-100 & CW-40 & Robust (worst case)" in tex
    )
    for row, g in zip(body, doc["groups"], strict=True):
        cells = row.removesuffix(" \\\\").split(" & ")
        for col, key in ((1, "clean"), (6, "robust")):
            s = g[key]
            if s["low"] == s["low"]:  # an interval (not nan)
                want = f"{s['mean']:.1f} {{\\scriptsize [{s['low']:.1f}, {s['high']:.1f}]}}"
            else:
                want = f"{s['mean']:.1f}"
            assert cells[col] == want
        assert cells[2].startswith("71.0 ")  # FGSM: 70, 71, 72 over the seeds
    md = (tmp_path / "out" / "table.md").read_text()
    assert md.count("\n| madry") == 1 and md.count("\n| atblr") == 1
    robust = doc["groups"][1]["robust"]
    assert f"{robust['mean']:.1f} [{robust['low']:.1f}, {robust['high']:.1f}]" in md
    assert {f.name for f in written.files} >= {"arms.png", "paired.png", "report.md"}


def test_study_figures_hold_the_report(tmp_path):
    doc = study_doc(tmp_path, grid=True)
    path = write_json(tmp_path / "report.json", doc)
    with style.styled():
        rep = load_report(str(path), tmp_path)
        assert list(rep.figures) == ["arms", "grid", "paired"]
        robust, clean = (rep.figures["arms"][0].axes[i] for i in (0, 1))
        for ax, key in ((robust, "robust"), (clean, "clean")):
            drawn = {ln.get_gid(): ln for ln in ax.get_lines() if ln.get_gid()}
            for g in doc["groups"]:
                assert float(drawn[g["label"]].get_xdata()[0]) == pytest.approx(g[key]["mean"])
                seeds = [m[key] for m in doc["members"] if m["label"] == g["label"]]
                assert list(drawn[g["label"] + " seeds"].get_xdata()) == seeds
        paired = lines(rep.figures["paired"][0])
        for p in doc["pairs"]:
            assert paired[f"{p['a']} - {p['b']}"][0] == [pytest.approx(p["mean"])]
        grid = lines(rep.figures["grid"][0])
        atblr = [g for g in doc["groups"] if g["arm"] == "atblr"]
        assert grid["atblr robust"] == (
            [0.1, 1.0],
            [g["robust"]["mean"] for g in atblr],
        )

        def colours(name: str, prefix: str) -> set[str]:
            fig = rep.figures[name][0]
            gids = [
                (ln.get_gid() or "", ln.get_color()) for ax in fig.axes for ln in ax.get_lines()
            ]
            return {c for gid, c in gids if gid.startswith(prefix)}

        # one colour per arm, the same in every figure
        assert colours("arms", "madry") == {style.OKABE_ITO[0]}
        assert colours("arms", "atblr") == colours("grid", "atblr") == {style.OKABE_ITO[1]}
        assert colours("paired", "atblr") == {style.OKABE_ITO[1]}  # the pair's first arm
        for fig, _ in rep.figures.values():
            style.close(fig)
