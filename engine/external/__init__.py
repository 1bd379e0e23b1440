"""Models from outside the workbench: `eval --model` and `workbench import`.

source.py    what --model and its options ask for; the config they resolve to (torch-free)
weights.py   a foreign weights file as a state dict, never running code from it
foreign.py   build, check and load a foreign model in memory; its `external` record
importer.py  write it as an ordinary workbench checkpoint
The factories themselves and the published layouts are in engine/models/
(factory.py, layouts.py, one arch file per layout).
"""
