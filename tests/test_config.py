import pytest

from advkeras.assess.config import default_config, load_config, section
from advkeras.errors import InputError


def test_a_partial_section_keeps_the_other_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train: {epochs: 5}\ndefenses: {params: {initial-ae: {epochs: 9}, pgd-training: {epochs: 1}}}\n")
    cfg = load_config(path)
    assert cfg["train"] == {**default_config()["train"], "epochs": 5}
    assert cfg["defenses"]["params"]["initial-ae"] == {**default_config()["defenses"]["params"]["initial-ae"],
                                                       "epochs": 9}
    assert cfg["defenses"]["params"]["pgd-training"] == {"epochs": 1}  # defense names are the user's to choose


@pytest.mark.parametrize("text, where", [("train: {epoch: 5}", "train.epoch"), ("trian: {epochs: 5}", "trian"),
                                         ("defenses: {max_evals: 3}", "defenses.max_evals")])
def test_unknown_keys_are_refused_with_their_full_path(tmp_path, text, where):
    path = tmp_path / "c.yaml"
    path.write_text(text + "\n")
    with pytest.raises(InputError, match=f"unknown setting '{where}'"):
        load_config(path)


def test_a_config_dict_and_overrides_are_merged_not_dropped():
    cfg = load_config({"train": {"epochs": 2}, "max_eval": 10}, max_eval=20, data="mnist", model=None)
    assert cfg["train"]["epochs"] == 2 and cfg["train"]["patience"] == default_config()["train"]["patience"]
    assert cfg["max_eval"] == 20 and cfg["data"] == "mnist"
    assert section({"relevant_neurons": {"mu": 20}}, "relevant_neurons") == {
        **default_config()["relevant_neurons"], "mu": 20}
