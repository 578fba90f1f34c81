from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlsplit

import pyotp

from labelvault.auth.recovery import (
    RECOVERY_ALPHABET,
    generate_recovery_codes,
    hash_recovery_code,
    match_recovery_code,
    normalize_recovery_code,
)
from labelvault.auth.totp import (
    new_totp_secret,
    provisioning_uri,
    time_step,
    totp_code_at,
    verify_totp,
)

NOW = 1_700_000_015.0  # inside step 56_666_667


def test_secret_is_160_bits_base32() -> None:
    secret = new_totp_secret()
    assert len(base64.b32decode(secret)) == 20
    assert new_totp_secret() != secret


def test_provisioning_uri() -> None:
    secret = new_totp_secret()
    uri = provisioning_uri(secret, "ada@example.com")
    parts = urlsplit(uri)
    assert parts.scheme == "otpauth" and parts.netloc == "totp"
    query = parse_qs(parts.query)
    assert query["secret"] == [secret]
    assert query["issuer"] == ["LabelVault"]


def test_valid_code_returns_step_and_matches_pyotp() -> None:
    secret = new_totp_secret()
    code = pyotp.TOTP(secret).at(NOW)
    step = verify_totp(secret, code, last_used_step=None, now=NOW)
    assert step == time_step(NOW)


def test_adjacent_steps_accepted() -> None:
    secret = new_totp_secret()
    step = time_step(NOW)
    assert verify_totp(secret, totp_code_at(secret, step - 1), last_used_step=None, now=NOW) == (
        step - 1
    )
    assert verify_totp(secret, totp_code_at(secret, step + 1), last_used_step=None, now=NOW) == (
        step + 1
    )


def test_replay_of_same_step_rejected() -> None:
    secret = new_totp_secret()
    code = totp_code_at(secret, time_step(NOW))
    used = verify_totp(secret, code, last_used_step=None, now=NOW)
    assert used is not None
    assert verify_totp(secret, code, last_used_step=used, now=NOW) is None
    assert verify_totp(secret, code, last_used_step=used, now=NOW + 25) is None
    # An older (still in-window) step is rejected too once a newer one was used.
    older = totp_code_at(secret, used - 1)
    assert verify_totp(secret, older, last_used_step=used, now=NOW) is None
    newer = totp_code_at(secret, used + 1)
    assert verify_totp(secret, newer, last_used_step=used, now=NOW + 30) == used + 1


def test_code_from_two_steps_ago_rejected() -> None:
    secret = new_totp_secret()
    old = totp_code_at(secret, time_step(NOW) - 2)
    current = totp_code_at(secret, time_step(NOW))
    if old != current:
        assert verify_totp(secret, old, last_used_step=None, now=NOW) is None


def test_garbage_rejected_without_exceptions() -> None:
    secret = new_totp_secret()
    code = totp_code_at(secret, time_step(NOW))
    for bad in ["", "12345", "1234567", "abcdef", "12a456", "١٢٣٤٥٦", "-12345", code + "0", None]:
        assert verify_totp(secret, bad, last_used_step=None, now=NOW) is None  # type: ignore[arg-type]
    spaced = f"{code[:3]} {code[3:]}"
    assert verify_totp(secret, spaced, last_used_step=None, now=NOW) == time_step(NOW)


def test_recovery_code_format() -> None:
    codes = generate_recovery_codes()
    assert len(codes) == 10 and len(set(codes)) == 10
    for code in codes:
        groups = code.split("-")
        assert [len(g) for g in groups] == [4, 4, 4, 4]
        assert all(ch in RECOVERY_ALPHABET for ch in "".join(groups))
    assert len(RECOVERY_ALPHABET) ** 16 >= 2**80
    assert not set("ilou") & set(RECOVERY_ALPHABET)


def test_recovery_codes_single_use_via_remaining_hashes() -> None:
    codes = generate_recovery_codes(3)
    hashes: list[str | None] = [hash_recovery_code(c) for c in codes]
    assert all(h is not None and h.startswith("$argon2id$") for h in hashes)

    # Sloppy input: upper case, spaces instead of dashes.
    sloppy = codes[1].upper().replace("-", " ")
    index = match_recovery_code(sloppy, hashes)
    assert index == 1
    hashes[index] = None  # the caller marks it used
    assert match_recovery_code(codes[1], hashes) is None
    assert match_recovery_code(codes[2], hashes) == 2
    assert match_recovery_code("not-a-code", hashes) is None
    assert match_recovery_code(generate_recovery_codes(1)[0], hashes) is None


def test_recovery_normalisation_maps_confusables() -> None:
    assert normalize_recovery_code("0O1I-lL00-0000-0000") == "0011110000000000"
    assert normalize_recovery_code("uuuu-0000-0000-0000") is None
    assert normalize_recovery_code("0000-0000-0000") is None
