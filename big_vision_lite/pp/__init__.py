"""Preprocessing: `builder.get_preprocess_fn(pp_str)` and every registered op.

Importing this package imports every ops module, so all ops are registered.
"""
from big_vision_lite.pp import builder  # noqa: F401
from big_vision_lite.pp import ops_general  # noqa: F401
from big_vision_lite.pp import ops_image  # noqa: F401
from big_vision_lite.pp import ops_multi  # noqa: F401
from big_vision_lite.pp import ops_task  # noqa: F401
from big_vision_lite.pp import ops_text  # noqa: F401
from big_vision_lite.pp import ops_video  # noqa: F401
