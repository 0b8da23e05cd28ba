"""One module per data source; each registers its datasets with ``sources.register``.

Every module here is imported when ``xmodal.core.datasets`` is, so adding a source is adding a
file. A module must import cheaply: heavy or optional imports (resvg, pretty_midi, nltk...)
belong inside the builder's methods, so a missing package is reported by ``check_installed``
with its install command rather than as an ImportError at start.
"""
import importlib
import pkgutil

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")
