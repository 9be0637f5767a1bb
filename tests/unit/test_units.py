import pytest

from shared.domain.units import UnitError, format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (4294967296, 4 * 2**30),
        ("4GiB", 4 * 2**30),
        ("500MiB", 500 * 2**20),
        ("10G", 10 * 10**9),
        ("10 GB", 10 * 10**9),
        ("1.5Gi", int(1.5 * 2**30)),
        ("2tib", 2 * 2**40),
        ("123", 123),
        (0, 0),
    ],
)
def test_sizes_in_bytes_and_units(text: object, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("4 parsecs", "unknown unit 'parsecs'"),
        ("-1GiB", "is not a size"),
        (-5, "non-negative"),
        ("lots", "is not a size"),
        (True, "expected a size"),
        ([1], "expected a size"),
    ],
)
def test_bad_sizes_say_what_is_accepted(text: object, message: str) -> None:
    with pytest.raises(UnitError, match=message):
        parse_size(text)


@pytest.mark.parametrize(("text", "seconds"), [(600, 600.0), ("30m", 1800.0), ("2h", 7200.0), ("45s", 45.0)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_bad_duration() -> None:
    with pytest.raises(UnitError, match="unknown unit 'fortnights'"):
        parse_duration("2fortnights")


def test_format_size_picks_the_largest_unit() -> None:
    assert format_size(16 * 2**30) == "16 GiB"
    assert format_size(512 * 2**20) == "512 MiB"
    assert format_size(12) == "12 B"
