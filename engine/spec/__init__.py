"""What a run is asked to do, torch-free: the preset schema and files, the registries, errors.

Nothing here imports torch, numpy or scipy (checked by lint-imports), so the light
commands (`inspect`, `runs`, `presets`) and the app's listing start fast.
"""
