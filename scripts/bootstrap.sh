#!/usr/bin/env bash
# Install what dirsync needs on a Debian machine, only where it is missing:
# OpenLDAP's server and tools, the headers python-ldap compiles against, a C
# compiler, a virtual environment (.venv) with dirsync installed in it.
# Sourced by quickstart.sh and test.sh; safe to run again.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
python="${PYTHON:-python3}"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
command -v slapd >/dev/null 2>&1 || [ -x /usr/sbin/slapd ] || missing+=(slapd)
command -v ldapadd >/dev/null 2>&1 || missing+=(ldap-utils)
[ -e /usr/include/ldap.h ] || missing+=(libldap2-dev)
[ -e /usr/include/sasl/sasl.h ] || missing+=(libsasl2-dev)
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if ! command -v "$python" >/dev/null 2>&1; then
  missing+=(python3 python3-venv python3-dev)
else
  "$python" -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
  inc="$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
  [ -e "$inc/Python.h" ] || missing+=(python3-dev)
fi
# Extra tools the test suite and benchmarks compare against or drive.
if [ "${DIRSYNC_TEST_TOOLS:-0}" = 1 ]; then
  [ -e /usr/share/doc/libnet-ldap-perl ] || missing+=(libnet-ldap-perl)
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v swaks >/dev/null 2>&1 || missing+=(swaks)
  command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
  # A Samba AD domain controller for the ad kind's tests (dirsync/testing/samba.py).
  command -v samba >/dev/null 2>&1 || [ -x /usr/sbin/samba ] || missing+=(samba samba-ad-dc)
  command -v samba-tool >/dev/null 2>&1 || missing+=(samba-common-bin)
  [ -e /usr/share/doc/samba-ad-provision ] || missing+=(samba-ad-provision)
  [ -e /usr/share/doc/samba-dsdb-modules ] || missing+=(samba-dsdb-modules)
  [ -e /usr/share/doc/winbind ] || missing+=(winbind)
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "installing system packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
stamp="$venv/.dirsync-installed"
# Reinstalled when the packaging or the compiled reader's source changed,
# or when the built extension is missing (a fresh clone, a cleaned tree).
if [ ! -e "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ] \
    || [ "$root/setup.py" -nt "$stamp" ] || [ "$root/dirsync/ldif/_ldifstream.c" -nt "$stamp" ] \
    || ! compgen -G "$root/dirsync/ldif/_ldifstream*.so" >/dev/null; then
  "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$venv/bin/python" -m pip install -q -e "$root[test]"
  touch "$stamp"
fi
