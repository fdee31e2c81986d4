"""The tracking config: every bad file fails with the file, the field and what is allowed; the shipped one loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiklive_assets.storage.keys import HANDLE_RULE, InvalidKeyPart, check_handle
from tiklive_assets.tracking import ConfigError, TrackingConfig, load_config, parse_config

REPO = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tiklive.yaml"
    path.write_text(text)
    return path


def _error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    return message


def test_malformed_yaml_names_the_line(tmp_path):
    path = _write(tmp_path, "plan:\n  requests_per_minute: 200\naccounts:\n  - alice123\n   - bob: [1, 2\n")
    message = _error(path)
    assert "not valid YAML" in message
    assert "line 5" in message


def test_unknown_top_level_key_lists_the_sections(tmp_path):
    message = _error(_write(tmp_path, "acounts:\n  - alice123\n"))
    assert "acounts: unknown key" in message
    for section in ("plan", "limits", "capture", "accounts", "hashtags", "keywords", "music"):
        assert section in message.split("allowed here:")[1]


def test_unknown_nested_key_names_the_allowed_keys(tmp_path):
    message = _error(_write(tmp_path, "accounts:\n  - alice123\n  - handle: bob\n    maxpages: 2\n"))
    assert "accounts[1].maxpages: unknown key" in message
    allowed = message.split("allowed here:")[1].split("\n")[0]
    assert [k.strip() for k in allowed.split(",")] == [
        "handle",
        "max_pages",
        "max_videos_per_day",
        "followers",
        "following",
        "follow_max_pages",
        "comments",
    ]


def test_unknown_key_two_levels_down(tmp_path):
    message = _error(_write(tmp_path, "accounts:\n  - handle: bob\n    comments:\n      depth: 1\n"))
    assert "accounts[0].comments.depth: unknown key" in message
    assert "reply_depth" in message and "max_reply_pages" in message


def test_wrong_type_names_the_field_and_the_type(tmp_path):
    message = _error(_write(tmp_path, "accounts:\n  - alice123\n  - handle: bob\n    max_pages: lots\n"))
    assert "accounts[1].max_pages" in message
    assert "valid integer" in message
    assert "'lots'" in message


def test_out_of_range_names_the_bound(tmp_path):
    message = _error(_write(tmp_path, "accounts:\n  - handle: bob\n    comments:\n      reply_depth: 2\n"))
    assert "accounts[0].comments.reply_depth" in message
    assert "less than or equal to 1" in message


def test_bad_handle_names_the_rule(tmp_path):
    message = _error(_write(tmp_path, "accounts:\n  - 'not a handle!'\n"))
    assert "accounts[0].handle" in message
    assert HANDLE_RULE in message  # the key layout's own rule (storage/keys.py), not a copy of it
    assert "'not a handle!'" in message
    assert "(line 2)" in message


@pytest.mark.parametrize("handle", ["..", ".", "...."])
def test_a_handle_that_cannot_become_an_object_key_is_rejected_with_file_line_and_field(tmp_path, handle):
    with pytest.raises(InvalidKeyPart):  # the rule the config enforces is the key layout's
        check_handle(handle)
    message = _error(
        _write(tmp_path, f"plan:\n  requests_per_minute: 10\naccounts:\n  - alice123\n  - handle: '{handle}'\n")
    )
    assert "accounts[1].handle" in message and "(line 5)" in message
    assert "cannot become an object key" in message and HANDLE_RULE in message


def test_a_research_username_that_cannot_become_a_key_is_rejected(tmp_path):
    message = _error(_write(tmp_path, "research:\n  usernames: [tagesschau, '..']\n"))
    assert "research.usernames" in message and "'..'" in message and "(line 2)" in message


def test_a_handle_with_a_leading_at_sign_is_accepted_without_it():
    assert parse_config({"accounts": ["@alice123"]}).accounts[0].handle == "alice123"


def test_a_duplicate_key_is_rejected_with_file_line_and_key(tmp_path):
    path = _write(
        tmp_path,
        "plan:\n  requests_per_minute: 10\ncapture:\n  max_attempts: 2\n"
        "accounts:\n  - alice123\ncapture:\n  max_attempts: 9\n",
    )
    message = _error(path)
    assert "line 7" in message and "duplicate key 'capture'" in message and "first given at line 3" in message


def test_a_duplicate_nested_key_is_rejected(tmp_path):
    message = _error(_write(tmp_path, "plan:\n  requests_per_minute: 10\n  requests_per_minute: 20\n"))
    assert "line 3" in message and "duplicate key 'requests_per_minute'" in message


def test_yaml_merge_keys_and_repeated_list_items_are_not_duplicates(tmp_path):
    path = _write(
        tmp_path,
        "limits: &l\n  max_pages: 2\nmusic:\n  - <<: {max_pages: 1}\n    id: '9001'\nhashtags: ['1001', '1001']\n",
    )
    config = load_config(path)
    assert config.music[0].max_pages == 1 and config.limits.max_pages == 2


def test_bounded_wait_and_media_options_load_and_validate(tmp_path):
    config = load_config(
        _write(
            tmp_path,
            (
                "plan:\n  max_retry_after_seconds: 30\n  request_deadline_seconds: 90\n  max_response_bytes: 65536\n"
                "capture:\n  max_video_bytes: 1000\n  download_deadline_seconds: 5\n"
                "  allowed_media_origins: ['http://10.0.0.5:8080', 'https://media.example']\n"
            ),
        )
    )
    assert (config.plan.max_retry_after_seconds, config.plan.request_deadline_seconds) == (30, 90)
    assert config.plan.max_response_bytes == 65536
    assert (config.capture.max_video_bytes, config.capture.download_deadline_seconds) == (1000, 5)
    assert config.capture.allowed_media_origins == ["http://10.0.0.5:8080", "https://media.example"]
    defaults = TrackingConfig()
    assert (defaults.plan.max_retry_after_seconds, defaults.plan.max_response_bytes) == (300, 16 * 1024 * 1024)
    assert defaults.capture.max_video_bytes == 512 * 1024 * 1024 and defaults.capture.allowed_media_origins == []


@pytest.mark.parametrize("origin", ["ftp://x", "http://host/path", "https://user:pw@host", "host:80", "file:///etc"])
def test_an_allowed_media_origin_that_is_not_an_origin_is_rejected(tmp_path, origin):
    message = _error(_write(tmp_path, f"capture:\n  allowed_media_origins: ['{origin}']\n"))
    assert "capture.allowed_media_origins" in message and "not an origin" in message and "(line 2)" in message


def test_publish_time_outside_the_api_values(tmp_path):
    message = _error(_write(tmp_path, "keywords:\n  - keyword: cooking\n    publish_time: 3\n"))
    assert "keywords[0].publish_time" in message
    assert "0, 1, 7, 30, 90 or 180" in message


def test_top_level_must_be_a_mapping(tmp_path):
    message = _error(_write(tmp_path, "- alice123\n- bob\n"))
    assert "top level must be a mapping" in message


def test_missing_file_says_how_to_create_one(tmp_path):
    path = tmp_path / "nowhere.yaml"
    message = _error(path)
    assert "no such file" in message
    assert "tiklive.yaml is a documented starting point" in message
    assert "TIKLIVE_CONFIG" in message


def test_every_problem_is_reported_at_once(tmp_path):
    message = _error(_write(tmp_path, "plan:\n  requests_per_minute: 0\nhashtags:\n  - cats\n"))
    assert "2 problem(s)" in message
    assert "plan.requests_per_minute" in message
    assert "hashtags[0].id" in message


def test_the_shipped_config_loads():
    config = load_config(REPO / "tiklive.yaml")
    assert isinstance(config, TrackingConfig)
    assert [a.handle for a in config.accounts] == ["alice123", "bob"]
    assert config.max_pages(config.accounts[1]) == 2
    assert config.max_pages(config.accounts[0]) == config.limits.max_pages
    assert [k.publish_time for k in config.keywords] == [30]


def test_bare_values_and_empty_sections():
    config = parse_config({"accounts": None, "hashtags": [1001], "music": ["9001"]})
    assert config.accounts == []
    assert config.hashtags[0].id == "1001"
    assert config.music[0].id == "9001"
    assert parse_config(None) == TrackingConfig()


def test_refresh_ages_must_be_positive_and_ascending(tmp_path):
    message = _error(_write(tmp_path, "refresh:\n  ages_hours: [6, 1]\n"))
    assert "refresh.ages_hours" in message and "ascending" in message
    message = _error(_write(tmp_path, "refresh:\n  ages_hours: [0, 1]\n"))
    assert "more than 0 hours" in message


def test_storage_prices_default_to_the_documented_list_prices():
    config = parse_config(None)
    s3 = config.storage_prices.s3
    assert (s3.hot, s3.warm, s3.cold) == ("STANDARD", "STANDARD_IA", "GLACIER")
    warm = s3.tier("warm")
    # cold classes bill a 3 KiB object as 128 KiB: the reason compaction exists
    assert warm.billed_bytes(3 * 1024) == 128 * 1024 and warm.billed_bytes(1 << 20) == 1 << 20
    assert s3.tier("cold").billed_bytes(3 * 1024) == 43 * 1024
    assert config.storage_prices.b2.tier("cold").gb_month == 0.006
    assert config.compaction.hot_days == 30 and config.compaction.provider == "s3"


def test_a_provider_price_table_can_be_replaced_and_is_checked(tmp_path):
    text = (
        "storage_prices:\n  r2:\n    hot: STANDARD\n    warm: STANDARD\n    cold: COLD\n"
        "    classes:\n      STANDARD: {gb_month: 0.012}\n"
    )
    message = _error(_write(tmp_path, text))
    assert "storage_prices.r2" in message and "cold='COLD' is not one of the classes given" in message
    config = load_config(_write(tmp_path, text.replace("cold: COLD", "cold: STANDARD")))
    assert config.storage_prices.r2.tier("cold").gb_month == 0.012
    assert config.storage_prices.s3.tier("hot").gb_month == 0.023  # the others keep their defaults
