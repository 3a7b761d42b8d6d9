import pytest

from bridge.cookies import partner_key_from_cookie_header


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ("partnero_partner=ptr_anna", "ptr_anna"),
        ("_ga=GA1.2.3; partnero_partner=abc123; theme=dark", "abc123"),
        ('partnero_partner="quoted-key"', "quoted-key"),
        ("partnero_partner=with%2Ddash", "with-dash"),
        ("bad cookie here; partnero_partner=still-found", "still-found"),
        ("partnero_partner=", None),
        ("partnero_partner=%3Cscript%3E", None),
        ("other=1", None),
        ("", None),
        (None, None),
    ],
)
def test_partner_key_from_cookie_header(header: str | None, key: str | None) -> None:
    assert partner_key_from_cookie_header(header) == key


def test_cookie_name_is_configurable() -> None:
    assert partner_key_from_cookie_header("partnero_referral=rf_1", name="partnero_referral") == "rf_1"
