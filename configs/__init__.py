"""Training configs (`--config configs/NAME.py:args`) and their shared modules.

Imported as a package (`from configs import common`); see config_args.configs_importable.
"""
