"""The run orchestration's earlier home: every name now lives in ``vaekit.runs`` (kept so that code importing
``vaekit.run`` keeps working)."""

from vaekit.runs import *  # noqa: F401,F403
from vaekit.runs import __all__  # noqa: F401
