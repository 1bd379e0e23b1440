"""Results that leave the terminal: figures, LaTeX and Markdown tables, TensorBoard and CSV.

`run_data`, `scalars` and `tables` are torch-free and matplotlib-free; the
figure modules import matplotlib (Agg) when called; `tensorboard` imports
torch's SummaryWriter when called. See docs/architecture.md.
"""
