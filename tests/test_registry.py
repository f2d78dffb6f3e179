"""The generic registry: decorator registration, lookup, suggestions, listing, plugin files."""

import textwrap

import pytest

from benchmark.errors import BenchmarkError, UnknownNameError
from benchmark.registry import DATASETS, METHODS, Registry, load_plugin_file


def make_registry() -> Registry:
    reg = Registry("widget")

    @reg.register("round_thing")
    class Round:
        """A round widget.

        More text that is not the description."""

        name = ""

    @reg.register("square", description="explicit description")
    def square():
        return 4

    return reg


def test_decorator_registers_with_first_docstring_line_and_sets_class_name():
    reg = make_registry()
    assert reg.names() == ["round_thing", "square"]
    entries = {e.name: e for e in reg.entries()}
    assert entries["round_thing"].description == "A round widget."
    assert entries["square"].description == "explicit description"
    assert reg.get("round_thing").name == "round_thing"
    assert reg.get("square")() == 4


def test_wildcard_listing():
    assert make_registry().names("sq*") == ["square"]


def test_unknown_name_suggests_closest():
    with pytest.raises(UnknownNameError) as err:
        make_registry().get("squar")
    message = str(err.value)
    assert "did you mean square" in message and "\n" not in message


def test_unknown_name_always_names_candidates():
    with pytest.raises(UnknownNameError, match=r"did you mean .*(round_thing|square)"):
        make_registry().get("zzz")


def test_same_name_for_another_object_is_rejected():
    reg = make_registry()
    with pytest.raises(BenchmarkError, match="registered twice"):
        reg.add("square", lambda: 5)


def test_invalid_names_are_rejected():
    with pytest.raises(BenchmarkError, match="invalid widget name"):
        Registry("widget").add("Bad Name", object())


def test_builtins_are_discovered_lazily():
    assert {"vanilla", "weight_decay"} <= set(METHODS.names())
    assert "cmnist" in DATASETS


def test_plugin_file_registers_a_method(tmp_path):
    plugin = tmp_path / "my_plugin_file.py"
    plugin.write_text(textwrap.dedent('''
        from benchmark.method import Method
        from benchmark.registry import METHODS

        @METHODS.register("from_file_method")
        class FromFile(Method):
            """A method defined in a single file."""
    '''))
    load_plugin_file(plugin)
    assert METHODS.get("from_file_method").name == "from_file_method"


def test_missing_plugin_file_is_one_line_error(tmp_path):
    with pytest.raises(BenchmarkError, match="not found"):
        load_plugin_file(tmp_path / "nope.py")


def test_broken_plugin_file_is_one_line_error(tmp_path):
    plugin = tmp_path / "broken_plugin.py"
    plugin.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(BenchmarkError, match="failed to import: RuntimeError: boom"):
        load_plugin_file(plugin)
