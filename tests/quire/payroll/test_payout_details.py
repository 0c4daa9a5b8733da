"""Bank details as the payroll domain checks, stores, shows and pays them: IBAN and BIC through
schwifty, local accounts by their country's bank-code format, the holder's name, the account's
fingerprint, masking, the payee snapshot, and the cooling period in Python and in SQL (run on
SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import literal, select

from quire.db import utcnow
from quire.payroll import payout_details as rules
from quire.payroll.errors import InvalidPayoutDetails
from quire.payroll.models import PayoutDetails, PayoutScheme
from quire.people import service as people
from quire.people.schemas import UserDraft
from tests.support.world import PASSWORD

DE_IBAN = "DE89370400440532013000"
FR_IBAN = "FR1420041010050500013M02606"
GB_IBAN = "GB82WEST12345698765432"
AE_IBAN = "AE070331234567890123456"  # outside SEPA: a BIC is required
GP_IBAN = "GP1120041010050500013M02606"  # Guadeloupe: banks there carry French BICs


def iban_account(**fields: object) -> rules.Account:
    values: dict[str, object] = {"scheme": "iban", "account_holder": "Ann Example", "iban": DE_IBAN}
    values.update(fields)
    return rules.validate_account(**values)  # type: ignore[arg-type]


def local_account(**fields: object) -> rules.Account:
    values: dict[str, object] = {
        "scheme": "local",
        "account_holder": "Ann Example",
        "country": "US",
        "bank_code": "021000021",
        "account_number": "123456789",
    }
    values.update(fields)
    return rules.validate_account(**values)  # type: ignore[arg-type]


def problems(exc: pytest.ExceptionInfo[InvalidPayoutDetails]) -> dict[str, str]:
    """{field: problem type} of a refusal."""
    return {".".join(map(str, p.loc)): p.type for p in exc.value.problems}


def refused(**fields: object) -> dict[str, str]:
    scheme = fields.get("scheme", "iban")
    with pytest.raises(InvalidPayoutDetails) as exc:
        (iban_account if scheme == "iban" else local_account)(**fields)
    assert exc.value.code == "invalid_payout_details"
    return problems(exc)


# --- IBAN -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        (DE_IBAN, DE_IBAN),
        ("de89 3704 0044 0532 0130 00", DE_IBAN),
        ("  DE89-3704-0044-0532-0130-00 ", DE_IBAN),
        ("fr14 2004 1010 0505 0001 3m02 606", FR_IBAN),
        (GB_IBAN, GB_IBAN),
        ("NO9386011117947", "NO9386011117947"),  # the shortest IBAN (15)
    ],
)
def test_a_valid_iban_is_accepted_in_its_electronic_form(typed, stored):
    account = iban_account(iban=typed)
    assert account.iban == stored
    assert account.country == stored[:2]
    assert account.scheme is PayoutScheme.IBAN


@pytest.mark.parametrize(
    ("iban", "problem"),
    [
        ("DE89370400440532013001", "iban_checksum"),  # one digit off
        ("DE00370400440532013000", "iban_checksum"),
        ("DE8937040044053201300", "iban_length"),  # a digit short
        ("DE893704004405320130000", "iban_length"),
        ("GB55WEST1234569876543A", "iban_format"),  # check digits fine, BBAN not GB's format
        ("FR4120041010050500013M02605", "iban_national_checksum"),  # the RIB key is wrong
        ("XX89370400440532013000", "iban_country"),
        ("US89370400440532013000", "iban_country"),
        ("DE89370400440532013ÄÖ", "iban_characters"),
        ("DE89" + "1" * 40, "iban_length"),
        ("   ", "missing"),
    ],
)
def test_an_iban_that_is_wrong_is_refused_naming_the_field_and_the_problem(iban, problem):
    assert refused(iban=iban) == {"iban": problem}


def test_the_gate_can_ask_whether_a_stored_iban_is_still_valid():
    assert rules.is_valid_iban(DE_IBAN)
    assert not rules.is_valid_iban("DE89370400440532013001")
    assert not rules.is_valid_iban("de89370400440532013000")  # not in electronic form
    assert not rules.is_valid_iban(None)


# --- BIC ------------------------------------------------------------------------------------


def test_a_bic_is_normalised_and_optional_inside_sepa():
    assert iban_account(bic=" cobadeffxxx ").bic == "COBADEFFXXX"
    assert iban_account(bic="COBADEFF").bic == "COBADEFF"
    assert iban_account().bic is None


@pytest.mark.parametrize(
    ("bic", "problem"),
    [
        ("COBADEF", "bic_format"),
        ("COBADEFFX", "bic_format"),
        ("COBA1EFF", "bic_format"),
        ("COBAXXFF", "bic_country"),
        ("BNPAFRPP", "bic_country_mismatch"),  # a French bank for a German IBAN
    ],
)
def test_a_wrong_bic_is_refused(bic, problem):
    assert refused(bic=bic) == {"bic": problem}


def test_a_bic_of_another_country_is_accepted_where_that_countrys_banks_serve_the_territory():
    account = iban_account(iban=GP_IBAN, bic="BNPAFRPP")
    assert (account.country, account.bic) == ("GP", "BNPAFRPP")


def test_outside_the_sepa_zone_an_iban_needs_its_bic():
    assert refused(iban=AE_IBAN) == {"bic": "missing"}
    assert iban_account(iban=AE_IBAN, bic="BOMLAEAD").bic == "BOMLAEAD"


def test_every_problem_is_reported_at_once():
    assert refused(
        account_holder=" ", iban="DE89370400440532013001", bank_code="1", country="ZZ"
    ) == {
        "account_holder": "missing",
        "iban": "iban_checksum",
        "bank_code": "not_allowed",
        "country": "country",
    }


def test_a_country_given_with_an_iban_must_be_the_ibans():
    assert iban_account(country="de").country == "DE"
    assert refused(country="FR") == {"country": "country_mismatch"}


# --- Local accounts -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("country", "bank_code", "account_number", "stored_code", "clearing"),
    [
        ("US", "021000021", "123456789", "021000021", "USABA"),
        ("US", "011000015", "0001234", "011000015", "USABA"),
        ("CA", "12345-678", "1234567", "067812345", "CACPA"),  # MICR transit-institution
        ("CA", "067812345", "1234567", "067812345", "CACPA"),
        ("AU", "062-000", "12345678", "062000", "AUBSB"),
        ("JP", "0001-001", "1234567", "0001001", "JPZGN"),
        ("IN", "hdfc0001234", "123456789012", "HDFC0001234", "INFSC"),
        ("NG", "058", "0123456789", "058", None),  # elsewhere: letters and digits
        ("us", "021 000 021", "1234 5678", "021000021", "USABA"),
    ],
)
def test_a_local_account_is_accepted_in_its_countrys_format(
    country, bank_code, account_number, stored_code, clearing
):
    account = local_account(country=country, bank_code=bank_code, account_number=account_number)
    assert account.scheme is PayoutScheme.LOCAL
    assert account.country == country.upper()
    assert account.bank_code == stored_code
    assert account.account_number == account_number.replace(" ", "")
    assert rules.CLEARING_SYSTEMS.get(account.country) == clearing


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"bank_code": "021000022"}, {"bank_code": "bank_code_checksum"}),  # ABA check digit
        ({"bank_code": "02100002"}, {"bank_code": "bank_code_format"}),
        ({"account_number": "123"}, {"account_number": "account_number_format"}),
        ({"country": "CA", "bank_code": "123456789"}, {"bank_code": "bank_code_format"}),
        ({"country": "AU", "bank_code": "06200"}, {"bank_code": "bank_code_format"}),
        (
            {"country": "JP", "bank_code": "0001", "account_number": "1234567"},
            {"bank_code": "bank_code_format"},
        ),
        (
            {"country": "JP", "bank_code": "0001001", "account_number": "12345678"},
            {"account_number": "account_number_format"},
        ),
        ({"country": "IN", "bank_code": "HDFC1001234"}, {"bank_code": "bank_code_format"}),
        ({"country": "NG", "bank_code": "0" * 36}, {"bank_code": "bank_code_format"}),
        ({"country": "DE"}, {"country": "iban_required"}),
        ({"country": "GB"}, {"country": "iban_required"}),
        ({"country": "ZZ"}, {"country": "country"}),
        ({"iban": DE_IBAN}, {"iban": "not_allowed"}),
        ({"bic": "BNPAFRPP"}, {"bic": "bic_country_mismatch"}),
        (
            {"country": None, "bank_code": None, "account_number": None},
            {"country": "missing", "bank_code": "missing", "account_number": "missing"},
        ),
    ],
)
def test_a_local_account_that_is_wrong_is_refused_naming_the_field(fields, expected):
    assert refused(scheme="local", **fields) == expected


def test_an_unknown_scheme_is_refused():
    with pytest.raises(InvalidPayoutDetails) as exc:
        rules.validate_account(scheme="swift", account_holder="Ann")
    assert problems(exc) == {"scheme": "scheme"}


# --- The holder -----------------------------------------------------------------------------


def test_the_holder_is_trimmed_and_composed():
    assert iban_account(account_holder="  Zoe\u0301 Smith ").account_holder == "Zoé Smith"
    assert iban_account(account_holder="a" * 140).account_holder == "a" * 140
    # Zero-width joiners belong to correct spelling in several scripts.
    assert iban_account(account_holder="\u0915\u094d\u200d\u0937").account_holder


@pytest.mark.parametrize(
    ("holder", "problem"),
    [
        ("", "missing"),
        ("   ", "missing"),
        ("a" * 141, "too_long"),
        ("Ann\x00", "invalid_character"),
        ("Ann\nSmith", "invalid_character"),
        ("Ann\u202eLIAM", "invalid_character"),  # a right-to-left override disguises a name
        ("Ann\u200b", "invalid_character"),
        ("Ann\ud800", "invalid_character"),  # a lone surrogate PostgreSQL cannot encode
        ("Ann\ue000", "invalid_character"),
    ],
)
def test_a_holder_name_that_cannot_go_into_a_payment_is_refused(holder, problem):
    assert refused(account_holder=holder) == {"account_holder": problem}


# --- Fingerprint, masking, payee ------------------------------------------------------------


def test_the_fingerprint_names_the_account_not_how_it_was_typed_nor_its_holder():
    first = iban_account(iban="de89 3704 0044 0532 0130 00", account_holder="Ann")
    second = iban_account(iban=DE_IBAN, account_holder="Bob", bic="COBADEFFXXX")
    assert first.fingerprint == second.fingerprint
    assert len(first.fingerprint) == 64
    assert first.fingerprint != iban_account(iban=FR_IBAN).fingerprint
    us = local_account()
    assert us.fingerprint == local_account(bank_code="021-000-021").fingerprint
    assert us.fingerprint != local_account(bank_code="011000015").fingerprint
    assert us.fingerprint != local_account(account_number="123456780").fingerprint


def details(account: rules.Account, **fields: object) -> PayoutDetails:
    row = PayoutDetails(user_id=uuid.uuid4(), account_fingerprint="", on_hold=False)
    rules.apply(row, account, now=fields.pop("changed_at", utcnow()))  # type: ignore[arg-type]
    for name, value in fields.items():
        setattr(row, name, value)
    return row


def test_masking_shows_the_iban_country_check_digits_and_last_four_only():
    masked = rules.mask(details(iban_account(bic="COBADEFFXXX")))
    assert masked == {
        "scheme": "iban",
        "account_holder": "Ann Example",
        "iban": "DE89…3000",
        "bic": "COBADEFFXXX",
        "account_number": None,
        "bank_code": None,
        "country": "DE",
    }


def test_masking_shows_at_most_the_last_four_of_an_account_number_and_never_half():
    masked = rules.mask(details(local_account(account_number="0012341234")))
    assert masked["account_number"] == "****1234"
    assert masked["bank_code"] == "021000021"
    assert rules.mask_account_number("1234") == "****34"
    assert rules.mask_account_number("1") == "****"


def test_the_payee_snapshot_holds_the_full_account_for_the_payout_file_and_masks_like_a_row():
    row = details(local_account())
    payee = rules.payee(row)
    assert payee == {
        "scheme": "local",
        "account_holder": "Ann Example",
        "iban": None,
        "bic": None,
        "account_number": "123456789",
        "bank_code": "021000021",
        "country": "US",
        "clearing_system": "USABA",
        "sepa": False,
        "account_fingerprint": row.account_fingerprint,
    }
    assert rules.mask(payee) == rules.mask(row)
    sepa = rules.payee(details(iban_account()))
    assert (sepa["iban"], sepa["sepa"], sepa["clearing_system"]) == (DE_IBAN, True, None)
    assert rules.payee(details(iban_account(iban=AE_IBAN, bic="BOMLAEAD")))["sepa"] is False


def test_a_stored_row_is_checked_again_with_todays_rules():
    row = details(iban_account())
    assert rules.problems_of(row) == []
    row.iban = "DE89370400440532013001"
    assert [p.type for p in rules.problems_of(row)] == ["iban_checksum"]


# --- Changes and the cooling period ---------------------------------------------------------


def test_only_a_new_account_moves_details_changed_at():
    then = utcnow() - dt.timedelta(days=30)
    row = details(iban_account(), changed_at=then)
    assert row.details_changed_at == then
    assert not rules.apply(row, iban_account(account_holder="Ann Exampel", bic="COBADEFF"))
    assert row.details_changed_at == then
    assert row.account_holder == "Ann Exampel"
    now = utcnow()
    assert rules.apply(row, iban_account(iban=FR_IBAN), now=now)
    assert (row.details_changed_at, row.iban, row.country) == (now, FR_IBAN, "FR")
    assert rules.apply(row, local_account(), now=now)
    assert (row.iban, row.bank_code, row.scheme) == (None, "021000021", "local")


def test_payouts_to_an_account_are_held_for_the_cooling_days_after_it_was_set():
    cutoff = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    row = details(iban_account(), changed_at=cutoff - dt.timedelta(days=13, hours=23))
    assert rules.in_cooling_period(row, cutoff, 14)
    assert not rules.in_cooling_period(row, cutoff, 13)
    assert not rules.in_cooling_period(row, cutoff, 0)
    row.details_changed_at = cutoff + dt.timedelta(hours=1)  # changed after the cutoff: held
    assert rules.in_cooling_period(row, cutoff, 1)


def test_cooling_until_is_the_end_of_the_period_while_it_lasts():
    now = utcnow()
    row = details(iban_account(), changed_at=now - dt.timedelta(days=3))
    assert rules.cooling_until(row, 14, now) == row.details_changed_at + dt.timedelta(days=14)
    assert rules.cooling_until(row, 3, now) is None
    assert rules.cooling_until(row, 0, now) is None


class _Settings:
    payout_details_cooling_days = 10


def test_cooling_until_reads_the_setting():
    now = utcnow()
    row = details(iban_account(), changed_at=now)
    assert rules.cooling_until(row, _Settings(), now) == now + dt.timedelta(days=10)  # type: ignore[arg-type]


@pytest.fixture
def stored(database):
    """Four specialists of one tenant: changed 1, 13 and 20 days before the cutoff, and one
    after it; plus a held one (changed long ago) and one without details."""
    cutoff = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    ages = {"d1": 1, "d13": 13, "d20": 20, "after": -1, "held": 400, "none": None}
    ids: dict[str, uuid.UUID] = {}
    with database.session(write=True) as s:
        tenant = people.create_tenant(s, "cooling", "Cooling")
        s.info["tenant_id"] = tenant.id
        for name, age in ages.items():
            user = people.add_user(
                s,
                tenant.id,
                UserDraft(
                    email=f"{name}@cooling.test",
                    display_name=name,
                    password=PASSWORD,
                    roles=["specialist"],
                    profile={"payout_currency": "USD" if name == "d20" else "EUR"},
                ),
            )
            ids[name] = user.id
            if age is None:
                continue
            account = local_account() if name == "d20" else iban_account()
            row = PayoutDetails(
                tenant_id=tenant.id,
                user_id=user.id,
                account_fingerprint="",
                on_hold=name == "held",
                created_at=cutoff - dt.timedelta(days=age),
            )
            rules.apply(row, account, now=cutoff - dt.timedelta(days=age))
            s.add(row)
    return tenant.id, cutoff, ids


def test_the_sql_cooling_rule_selects_what_the_python_rule_does(database, stored):
    tenant_id, cutoff, ids = stored
    names = {v: k for k, v in ids.items()}
    with database.session(tenant_id) as s:
        for days in (0, 1, 2, 14, 30):
            cooling = s.scalars(
                select(PayoutDetails.user_id).where(rules.in_cooling_period_clause(cutoff, days))
            ).all()
            rows = s.scalars(select(PayoutDetails)).all()
            expected = {r.user_id for r in rows if rules.in_cooling_period(r, cutoff, days)}
            assert set(cooling) == expected, days
        found = {
            names[u]
            for u in s.scalars(
                select(PayoutDetails.user_id).where(rules.in_cooling_period_clause(cutoff, 14))
            )
        }
        assert found == {"d1", "d13", "after"}


def test_the_sql_withhold_reason_names_missing_held_cooling_and_unreachable_accounts(
    database, stored
):
    from quire.people.models import SpecialistProfile, User

    tenant_id, cutoff, ids = stored
    names = {v: k for k, v in ids.items()}
    with database.session(tenant_id) as s:
        reason = rules.withhold_reason_clause(cutoff, 14, SpecialistProfile.payout_currency)
        rows = s.execute(
            select(User.id, reason)
            .join(SpecialistProfile, SpecialistProfile.user_id == User.id)
            .outerjoin(PayoutDetails, PayoutDetails.user_id == User.id)
        ).all()
        by_name = {names[user_id]: why for user_id, why in rows}
        # d20 is paid in USD to a US account; an EUR payout to it would be unreachable.
        assert by_name == {
            "d1": "payout_details_changed",
            "d13": "payout_details_changed",
            "after": "payout_details_changed",
            "d20": None,
            "held": "on_hold",
            "none": "missing_payout_details",
        }
        eur = rules.withhold_reason_clause(cutoff, 14, literal("EUR"))
        unreachable = s.scalar(select(eur).where(PayoutDetails.user_id == ids["d20"]))
        assert unreachable == "not_sepa_reachable"
