"""What a run leaves on disk and how it is read back, torch-free: events, run state,
run directories, checkpoint headers, saved evaluations.

Every reader here treats its file as hostile input. Nothing here imports torch, numpy
or scipy (checked by lint-imports).
"""
