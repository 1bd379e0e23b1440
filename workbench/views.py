"""What the CLI and the app show: rows of cells and formatted numbers, shared by both faces.

No rich or textual objects here, only strings (colour as rich markup style
names), so a table reads the same in `workbench inspect` and in the app's
inspector, and a change of wording happens once.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from engine.records.runs import RunInfo
from engine.spec.catalog import Entry
from engine.spec.errors import WorkbenchError
from engine.spec.registry import known_norm_label

RUN_STATUS_STYLE = {
    "running": "bold green",
    "finished": "cyan",
    "failed": "bold red",
    "interrupted": "yellow",
    "stale": "magenta",
    "damaged": "bold red",  # events.jsonl has lines no reader could trust
    "starting": "dim",
    "launching…": "dim",  # the live screen, before a launched run's first events
}
SANITY_STYLE = {"PASS": "green", "WARN": "yellow", "SKIP": "dim"}

# validation; best robust before clean and method last, so a narrow terminal cuts method first
RUN_COLUMNS = ("run", "status", "epoch", "best robust %", "clean %", "method")
# Home: the clean accuracy beside best robust is the same (best) epoch's, and says so
HOME_RUN_COLUMNS = ("run", "status", "epoch", "best robust %", "clean % at best", "method")
EVALUATION_COLUMNS = ("attack", "accuracy %", "95% interval", "seconds", "examples/s")
SAVED_EVALUATION_COLUMNS = ("time", "suite", "n", "eps", "robust %", "clean %", "sanity")


def num(value: Any, digits: int = 2) -> str:
    """A number with `digits` decimals, "-" for none (and anything else as it is)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return f"{value:.{digits}f}"
        except OverflowError:  # an integer too large for a float, from an edited file
            return "-"
    return "-" if value is None else str(value)


def short(value: Any) -> str:
    """A loss or other logged number: 4 significant digits ("-" for none)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return f"{value:.4g}"
        except OverflowError:
            return "-"
    return "-" if value is None else str(value)


def eps(value: Any) -> str:
    """An evaluation's eps ("mixed" when its columns use different ones)."""
    return f"{value:.4g}" if isinstance(value, int | float) else "mixed"


def threat(norm: Any, value: Any) -> str:
    """A threat model as every header names it: "L2, eps 0.5" (None: mixed; absent: L-inf)."""
    label = known_norm_label(norm, "mixed norms")
    return f"{label}, eps {eps(value)}"


def short_threat(norm: Any, value: Any) -> str:
    """A threat model in a narrow column: the eps alone under L-inf, else "L2 0.5"."""
    if norm == "linf":
        return eps(value)
    return f"{known_norm_label(norm, 'mixed')} {eps(value)}"


def duration(seconds: float | None) -> str:
    """h:mm:ss (or m:ss); "?" when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def fit(name: str, width: int) -> str:
    """A name shortened in the middle to `width` characters, keeping what tells names apart:
    a study member's own name whole (`lambda_gr…/lam01__s0`), else the first word and the
    tail (`cifar100_…et32_lam01`)."""
    if len(name) <= width:
        return name
    width = max(width, 4)
    study, _, member = name.rpartition("/")
    if study and len(member) + 4 <= width:
        return study[: width - len(member) - 2] + "…/" + member
    first = name.find("_") + 1  # the first word whole (cifar100_ is not cifar10_)
    head = first if 0 < first <= (width - 1) // 2 else (width - 1) * 2 // 5
    return name[:head] + "…" + name[len(name) - (width - 1 - head) :]


def error_text(exc: BaseException) -> str:
    """What a failed worker says: our own errors as written, anything else with its type."""
    return str(exc) if isinstance(exc, WorkbenchError) else f"{type(exc).__name__}: {exc}"


def styled(text: str, style: str) -> str:
    return f"[{style}]{text}[/]" if style else text


def run_status(status: str) -> str:
    """A status (or a running run's phase: training, evaluating, ...) in its colour."""
    return styled(status, RUN_STATUS_STYLE.get(status, RUN_STATUS_STYLE["running"]))


def run_row(r: RunInfo) -> tuple[str, ...]:
    """One run in a listing (status uncoloured; `run_status` colours it)."""
    return (
        r.name,
        r.phase or r.status,  # a running run says what it is doing
        f"{r.epoch}/{r.epochs}",
        num(r.best_robust_acc),
        num(r.last_clean_acc),
        r.method,
    )


def home_run_row(r: RunInfo) -> tuple[str, ...]:
    """One run on Home (`HOME_RUN_COLUMNS`): the clean accuracy of the epoch that set the best
    robust one, so the two numbers side by side describe one model, the best checkpoint."""
    row = run_row(r)
    return (*row[:4], num(r.best_clean_acc), row[5])


def with_intervals(cells: tuple[str, ...], r: RunInfo) -> tuple[str, ...]:
    """A run row's best robust and clean cells with their 95% intervals appended."""
    robust, clean = cells
    return (
        f"{robust} {interval(r.best_robust_interval)}".strip(),
        f"{clean} {interval(r.last_clean_interval)}".strip(),
    )


def preset_row(e: Entry) -> tuple[str, str]:
    """A preset or suite: its name (marked when it is the user's own file), its description."""
    return (e.name if e.builtin else f"{e.name} ({e.path})", e.description)


def interval(bounds: Any) -> str:
    """A 95% interval as [lo, hi] in points ("" when there is none, as in older evidence)."""
    if isinstance(bounds, list | tuple) and len(bounds) == 2:
        return f"[{num(bounds[0], 1)}, {num(bounds[1], 1)}]"
    return ""


def accuracy(record: dict[str, Any], name: str, unit: str = "") -> str:
    """`<name>_acc` of a record with its interval when it has one ("-" when none).

    `unit` follows the number: "%" where the accuracy stands in a sentence.
    """
    value = record.get(f"{name}_acc")
    if value is None:
        return "-"
    bounds = interval(record.get(f"{name}_interval"))
    return f"{num(value)}{unit} {bounds}" if bounds else f"{num(value)}{unit}"


def paper_columns(doc: dict[str, Any]) -> str:
    """Which columns are the papers' own (the rest strengthen the worst case), or ""."""
    cols = doc.get("columns") or {}
    mine = [k for k, p in cols.items() if p.get("paper")]
    if not mine:
        return ""
    rest = [k for k in cols if k not in mine]
    text = f"papers' columns: {', '.join(mine)}"
    return text + (f"; also {', '.join(rest)} (for the worst case)" if rest else "")


def evaluation_rows(doc: dict[str, Any]) -> list[tuple[str, ...]]:
    """An evaluation's table: per column its accuracy, interval, seconds and examples/s."""
    seconds = doc.get("seconds") or {}
    rates = doc.get("column_examples_per_s") or {}
    bounds = doc.get("intervals") or {}
    rows = []
    for k, v in (doc.get("accuracy") or doc.get("table") or {}).items():
        secs, rate = seconds.get(k), rates.get(k)
        rows.append(
            (
                k,
                num(v),
                interval(bounds.get(k)),
                f"{secs:.1f}" if secs is not None else "",
                f"{rate:,.0f}" if rate is not None else "",
            )
        )
    return rows


DIFF_COLUMNS = (
    "column",
    "A %",
    "B %",
    "A - B points",
    "95% interval",
    "McNemar p",
    "A only",
    "B only",
)


def diff_rows(doc: dict[str, Any]) -> list[tuple[str, ...]]:
    """A paired comparison, a row per shared column."""
    return [
        (
            r["column"],
            num(r["a"]),
            num(r["b"]),
            f"{r['diff']:+.2f}",
            interval([r["low"], r["high"]]),
            f"{r['p']:.3g}",
            str(r["a_only"]),
            str(r["b_only"]),
        )
        for r in doc["rows"]
    ]


APP_WORDING = {  # the engine's advice names CLI flags; the app has fields instead
    "give --source CKPT": "fill in the source checkpoint field",
    "use --suite blackbox": "choose the blackbox suite",
}


def sanity_lines(doc: dict[str, Any], app: bool = False) -> list[str]:
    """The sanity checks as rich-markup lines, each WARN followed by what it suggests."""
    lines = []
    for c in doc.get("sanity") or []:
        status = str(c.get("status"))
        figure = str(c.get("figure"))
        for cli, words in APP_WORDING.items() if app else ():
            figure = figure.replace(cli, words)
        lines.append(
            f"{styled(escape(status), SANITY_STYLE.get(status, 'dim'))} "
            f"{escape(str(c.get('name')))}: {escape(figure)}"
        )
        if status == "WARN" and c.get("advice"):
            lines.append(f"     {styled(escape(str(c['advice'])), 'yellow')}")
    return lines


def resumed_line(resumed: dict[str, Any]) -> str:
    """What `eval --resume` continued: the columns it found finished and those part done."""
    if not resumed.get("file"):
        return "nothing to resume: no saved progress with these settings, so it started afresh"
    done = [c for c in resumed.get("columns") or [] if not c.startswith("sanity/")]
    parts = [f"{len(done)} columns finished"]
    partial = resumed.get("partial") or {}
    parts += [f"{k.split('/')[-1]} at {v} examples" for k, v in partial.items()]
    return f"resumed from {resumed['file']}: " + ", ".join(parts)


def sanity_summary(row: dict[str, Any]) -> str:
    """An evaluation's checks in one cell: "N WARN", "SKIP" when none could run, "PASS" only
    when some ran and none warned (with the skipped ones counted), "-" when it has none."""
    checks, warns = int(row.get("checks") or 0), int(row.get("warnings") or 0)
    skipped = int(row.get("skipped") or 0)
    if not checks:
        return "-"
    if warns:
        return f"{warns} WARN"
    if skipped >= checks:
        return "SKIP"
    return "PASS" + (f", {skipped} SKIP" if skipped else "")


def saved_evaluation_row(row: dict[str, Any]) -> tuple[str, ...]:
    """One saved evaluation in a checkpoint's list: when, what, how many, how it came out."""
    if "error" in row:
        return ("-", f"{Path(row['file']).name}: {row['error']}", "", "", "", "", "")
    suite = str(row.get("suite"))
    if row.get("defense"):
        suite += f" + {row['defense']}"
    sanity = sanity_summary(row)
    when = str(row.get("time") or "-")[:16].replace("T", " ")
    return (
        when,
        suite,
        str(row.get("n")),
        short_threat(row.get("norm", "linf"), row.get("eps")),
        num(row.get("worst case")),
        num(row.get("clean")),
        sanity,
    )


def escape(text: str) -> str:
    """Rich markup escaping (square brackets), for text that comes from files."""
    return text.replace("[", r"\[")


# a study's tables (CLI report and the app's Study screen): the headline, robust, first
STUDY_GROUP_COLUMNS = ("arm (setting)", "seeds", "robust % [95% t]", "clean % [95% t]", "failed")
STUDY_MEMBER_COLUMNS = ("member", "robust %", "status", "epoch")


def over_seeds(o: dict[str, Any]) -> str:
    """A mean over seeds with its t-interval, "(1 seed)" when there is no interval."""
    if o["k"] == 0:
        return "-"
    if math.isnan(o["low"]):
        return f"{o['mean']:.1f} (1 seed)"
    return f"{o['mean']:.1f} [{o['low']:.1f}, {o['high']:.1f}]"


def study_group_row(g: dict[str, Any]) -> tuple[str, ...]:
    """One arm and setting: seeds evaluated of members, robust and clean over seeds, failed;
    a fixed model (evaluated once, no seeds) says so instead of a seed count."""
    fixed = bool(g.get("fixed"))

    def value(o: dict[str, Any]) -> str:
        return f"{o['mean']:.1f} (fixed model)" if fixed and o["k"] else over_seeds(o)

    return (
        g["label"],
        ("fixed " if fixed else "") + f"{g['evaluated']}/{g['members']}",
        value(g["robust"]),
        value(g["clean"]),
        str(len(g["failed"])) if g["failed"] else "",
    )


def study_member_row(r: dict[str, Any]) -> tuple[str, ...]:
    """One member: its robust (worst case) test accuracy, status (with the reason), epoch."""
    status = r["status"] + (f": {r['reason']}" if r.get("reason") else "")
    epoch = "fixed" if r.get("seed", 0) is None else f"{r['epoch']}/{r['epochs']}"
    return (r["name"], num(r.get("robust"), 1), status, epoch)


STUDY_STATUS_COLUMNS = ("member", "status", "job", "SLURM state", "node", "elapsed", "job log")


def study_status_row(r: dict[str, Any]) -> tuple[str, ...]:
    """One member beside its job (engine/study/cluster.py): its state on disk, the scheduler's."""
    state = r["job_state"] + (f" ({r['wait_reason']})" if r.get("wait_reason") else "")
    status = r["status"] + (f": {r['reason']}" if r.get("reason") else "")
    return (
        r["name"],
        status,
        r["job_id"] or "-",
        state or "-",
        r["node"] or "-",
        r["elapsed"] or "-",
        r["log"] or "-",
    )


def guard_line(e: dict[str, Any]) -> str:
    """One `guard` event as the log and the headless view print it."""
    fired = "; FIRED" if e.get("fired") else ""
    return (
        f"guard at step {e.get('step')}: {e.get('attack', 'PGD')} {num(e.get('acc'))}% "
        f"{interval(e.get('interval'))} (best {num(e.get('best_acc'))}% at step "
        f"{e.get('best_step', '-')}){fired}"
    )
