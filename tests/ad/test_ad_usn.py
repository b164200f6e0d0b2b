"""The uSNChanged fallback against a real Samba AD DC."""

from __future__ import annotations

import ldap
import pytest

from dirsync.directories import ADDirectory
from dirsync.directories.adusn import USNMark, USNMarkRefused, read_usn_changes
from dirsync.directories.syncrepl import RefreshRequired
from dirsync.testing.samba import SambaDC


def read(directory: ADDirectory, mark: USNMark | None) -> tuple[dict[str, bool], USNMark]:
    result = read_usn_changes(directory, mark)
    found = {entry.first("cn") or "": recipient for entry, recipient in result}
    assert result.next_mark is not None and not result.rejected
    return found, result.next_mark


def test_changes_above_the_mark_and_only_those(samba_dc: SambaDC, ad_ou: str,
                                               ad_directory: ADDirectory) -> None:
    ann = samba_dc.add_user(ad_ou, "Ann", mail="ann@corp.example")
    ben = samba_dc.add_user(ad_ou, "Ben", mail="ben@corp.example")
    samba_dc.add_contact(ad_ou, "Cat", mail="cat@partner.example")
    first, mark = read(ad_directory, None)
    assert first == {"Ann": True, "Ben": True, "Cat": True}

    nothing, mark = read(ad_directory, mark)
    assert nothing == {}

    samba_dc.modify(ann, [(ldap.MOD_REPLACE, "title", [b"Buyer"])])
    samba_dc.set_enabled(ben, False)
    changed, mark = read(ad_directory, mark)
    # A disabled user is seen, as no longer a recipient, so it can be deleted.
    assert changed == {"Ann": True, "Ben": False}

    again, _ = read(ad_directory, mark)
    assert again == {}


def test_a_mark_from_another_dc_or_the_future_is_refused(ad_directory: ADDirectory) -> None:
    _, mark = read(ad_directory, None)
    other = USNMark("CN=NTDS Settings,CN=DC9,CN=Servers,CN=Site,CN=Sites,CN=Configuration",
                    mark.usn)
    with pytest.raises(USNMarkRefused, match="mark is from"):
        list(read_usn_changes(ad_directory, other))
    ahead = USNMark(mark.server, mark.usn + 1_000_000)
    with pytest.raises(RefreshRequired, match="ahead of the DC"):
        list(read_usn_changes(ad_directory, ahead))


def test_marks_round_trip_and_garbage_is_refused() -> None:
    mark = USNMark("CN=NTDS Settings,CN=DC1,CN=Servers", 4711)
    assert USNMark.loads(mark.dumps()) == mark
    for bad in ("", "x y", "12", "-1 CN=x"):
        with pytest.raises(USNMarkRefused):
            USNMark.loads(bad)
