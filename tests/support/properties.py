"""What the property tests over a database share."""

from __future__ import annotations

import pytest

# Hypothesis shrinks a counterexample for up to five minutes (its MAX_SHRINKING_SECONDS) after
# finding it; under pytest-timeout's default (300 s) a failing property test reported a timeout
# instead of its falsifying example. Finding plus shrinking fit in this.
shrinking_timeout = pytest.mark.timeout(660)
