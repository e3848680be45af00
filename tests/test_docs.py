"""The user's guide stays a guide: README.md within 250 lines, and every relative link in README.md,
docs/, configs/fqn/README.md and benchmarks/results/README.md points at a file of this repository."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / 'README.md', ROOT / 'configs' / 'fqn' / 'README.md', ROOT / 'benchmarks' / 'results' / 'README.md',
         *sorted((ROOT / 'docs').glob('*.md'))]
LINK = re.compile(r'\]\(([^)\s]+)\)')


def test_readme_is_at_most_250_lines():
    assert len((ROOT / 'README.md').read_text().splitlines()) <= 250


@pytest.mark.parametrize('page', PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r'[a-z]+://|mailto:|#', target):
            continue
        path = (page.parent / target.split('#', 1)[0]).resolve()
        if not path.exists():
            broken.append(target)
    assert not broken, f'{page.relative_to(ROOT)}: {broken}'


def test_every_results_file_is_indexed():
    index = (ROOT / 'benchmarks' / 'results' / 'README.md').read_text()
    files = [p.name for p in (ROOT / 'benchmarks' / 'results').glob('*.md') if p.name != 'README.md']
    assert files and not [f for f in files if f'({f})' not in index]
