"""Writes V3 keystore files with eth-account (scrypt with its default
parameters, and pbkdf2) for lpgpu to read. Usage: make_keystores.py OUTDIR PASSWORD
Prints {"scrypt": address, "pbkdf2": address} as JSON."""

import json
import os
import sys

from eth_account import Account

out, password = sys.argv[1], sys.argv[2]
addresses = {}
for kdf in ("scrypt", "pbkdf2"):
    account = Account.create()
    os.makedirs(os.path.join(out, kdf), exist_ok=True)
    with open(os.path.join(out, kdf, "key.json"), "w") as f:
        json.dump(Account.encrypt(account.key, password, kdf=kdf), f)
    addresses[kdf] = account.address
print(json.dumps(addresses))
