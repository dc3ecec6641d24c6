"""Settings that would be unsafe are refused at start-up."""

from __future__ import annotations

import pytest
from pydantic import ValidationError


def test_production_refuses_to_start_with_auth_off():
    from app.core.config import Settings

    with pytest.raises(ValidationError, match="production requires API keys"):
        Settings(environment="production", auth=False, database_url="postgresql+psycopg://db/facegate")
    assert Settings(environment="production", auth=True, database_url="postgresql+psycopg://db/facegate").keys.required


@pytest.mark.parametrize("setting", [{"identify_fpir": 0}, {"identify_fpir": 0.5}, {"verify_max_failures": -1},
                                     {"verify_max_failures_per_key": -1}, {"verify_failure_window_seconds": 0},
                                     {"max_decode_mib": 1}])
def test_the_guards_settings_refuse_out_of_range_values_at_start_up(setting):
    from app.core.config import Settings

    with pytest.raises(ValidationError):
        Settings(**setting)
