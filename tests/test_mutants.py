"""Each mutant of tests/mutants.py still applies to today's code: its text occurs exactly once in its file, so a
refactor that moves the text makes `make test` fail here, not only the slower `make mutants`."""
import pytest

from conftest import REPO
from mutants import MUTANTS


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_the_mutant_s_text_occurs_exactly_once_in_its_file(mutant):
    text = (REPO / mutant.path).read_text()
    assert text.count(mutant.find) == 1, f"update the mutant {mutant.name}: its text occurs " \
                                         f"{text.count(mutant.find)} times in {mutant.path}"
