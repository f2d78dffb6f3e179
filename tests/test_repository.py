"""The repository's promises: CI runs the README's commands; run outputs are not committed."""

import re

from conftest import REPO


def readme_block(heading: str) -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split(f"## {heading}", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip()]


def test_ci_runs_exactly_the_readme_install_and_test_commands():
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    install, test = readme_block("Install"), readme_block("Test")
    assert install == ['pip install -e ".[test]"'] and test == ["pytest"]
    assert install[0] in ci
    assert any(line.startswith(test[0]) for line in ci)


def test_results_folder_ignores_run_outputs():
    ignore = (REPO / ".gitignore").read_text().splitlines()
    assert "results/*" in ignore and "!results/README.md" in ignore
