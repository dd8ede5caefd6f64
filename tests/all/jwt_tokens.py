"""Keys and tokens from an independent JWT implementation (PyJWT + cryptography).

usage: jwt_tokens.py OUT_DIR JKU_URL

Writes the verification keys to OUT_DIR (PEM files, HMAC secrets, a JWKS) and prints a
JSON object {case: token}. Hand-built tokens (alg none, key confusion, forged headers)
are signed with the standard library so that PyJWT's own guards do not stop them.
"""

import base64
import hashlib
import hmac
import json
import os
import sys
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import RSAAlgorithm

out, jku = sys.argv[1], sys.argv[2]
now = int(time.time())


def write(name, data):
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)


def pub_pem(key):
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**extra):
    base = {
        "iss": "https://idp.test",
        "aud": "orders",
        "sub": "user-1",
        "tid": "acme",
        "scope": "orders:read orders:write",
        "exp": now + 600,
        "iat": now,
    }
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def hand_made(header, payload, secret=None):
    signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(payload).encode())
    sig = "" if secret is None else b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())
    return signing_input + "." + sig


# Both ways HMAC secret files are written: binary (whose last byte may be a newline that
# is part of the key: HS512's here always is) and text with a trailing newline (HS384).
secrets = {
    "HS256": os.urandom(32),
    "HS384": os.urandom(24).hex().encode(),
    "HS512": b"\xff" + os.urandom(62) + b"\n",
}
for alg, secret in secrets.items():
    write(alg.lower() + ".key", secret + b"\n" if alg == "HS384" else secret)
rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ec256 = ec.generate_private_key(ec.SECP256R1())
ec384 = ec.generate_private_key(ec.SECP384R1())
ed = ed25519.Ed25519PrivateKey.generate()
write("rsa.pub.pem", pub_pem(rsa_key))
write("ec256.pub.pem", pub_pem(ec256))
write("ec384.pub.pem", pub_pem(ec384))
write("ed.pub.pem", pub_pem(ed))

# A JWKS with its own keys (kid + alg each) and an encryption key that must be skipped.
jwks_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
rsa_jwk = json.loads(RSAAlgorithm.to_jwk(jwks_rsa.public_key()))
rsa_jwk.update({"kid": "ps-jwks", "alg": "PS256", "use": "sig"})


def b64url(n, size=None):
    raw = n.to_bytes(size or (n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def ec_jwk(key, kid, minimal=False):
    """RFC 7518 6.2.1 coordinates: full length, or as minimal integers (PyJWT < 2.10)."""
    n = key.public_key().public_numbers()
    size = None if minimal else 32
    return {"kty": "EC", "crv": "P-256", "x": b64url(n.x, size), "y": b64url(n.y, size),
            "kid": kid, "alg": "ES256"}


# One EC key with full-length coordinates, and one whose x starts with a zero byte,
# published the way issuers that drop leading zeros publish it (31 bytes).
jwks_ec = ec.generate_private_key(ec.SECP256R1())
while jwks_ec.public_key().public_numbers().x.bit_length() <= 248:
    jwks_ec = ec.generate_private_key(ec.SECP256R1())
jwks_ec_short = ec.generate_private_key(ec.SECP256R1())
while jwks_ec_short.public_key().public_numbers().x.bit_length() > 248:
    jwks_ec_short = ec.generate_private_key(ec.SECP256R1())
short_jwk = ec_jwk(jwks_ec_short, "ec-jwks-short", minimal=True)
assert len(base64.urlsafe_b64decode(short_jwk["x"] + "=" * (-len(short_jwk["x"]) % 4))) < 32
enc_jwk = dict(rsa_jwk, kid="enc", alg="RSA-OAEP", use="enc")
keys = [rsa_jwk, ec_jwk(jwks_ec, "ec-jwks"), short_jwk, enc_jwk]
write("jwks.json", json.dumps({"keys": keys}).encode())

attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
attacker_jwk = json.loads(RSAAlgorithm.to_jwk(attacker.public_key()))

t = {}
for alg, secret in secrets.items():
    t["ok_" + alg.lower()] = jwt.encode(claims(), secret, alg, headers={"kid": alg.lower()})
t["ok_rs256"] = jwt.encode(claims(), rsa_key, "RS256", headers={"kid": "rs256"})
t["ok_es256"] = jwt.encode(claims(), ec256, "ES256", headers={"kid": "es256"})
t["ok_es384"] = jwt.encode(claims(), ec384, "ES384", headers={"kid": "es384"})
t["ok_eddsa"] = jwt.encode(claims(), ed, "EdDSA", headers={"kid": "eddsa"})
t["ok_ps256_jwks"] = jwt.encode(claims(), jwks_rsa, "PS256", headers={"kid": "ps-jwks"})
t["ok_es256_jwks"] = jwt.encode(claims(), jwks_ec, "ES256", headers={"kid": "ec-jwks"})
t["ok_es256_jwks_short_x"] = jwt.encode(claims(), jwks_ec_short, "ES256", headers={"kid": "ec-jwks-short"})
t["ok_within_leeway"] = jwt.encode(claims(exp=now - 2), rsa_key, "RS256", headers={"kid": "rs256"})
t["ok_read_only_scope"] = jwt.encode(claims(scope="orders:read"), rsa_key, "RS256", headers={"kid": "rs256"})
t["globex_tenant"] = jwt.encode(claims(tid="globex", sub="user-g"), rsa_key, "RS256", headers={"kid": "rs256"})
t["no_tenant"] = jwt.encode(claims(tid=None), rsa_key, "RS256", headers={"kid": "rs256"})

# Item 23: alg none, mixed case, empty signature.
t["alg_none"] = hand_made({"alg": "none", "kid": "rs256"}, claims())
t["alg_nOnE"] = hand_made({"alg": "nOnE", "kid": "rs256"}, claims())
t["empty_signature"] = t["ok_rs256"].rsplit(".", 1)[0] + "."
# Item 24: the RSA public key used as an HMAC secret.
t["key_confusion"] = hand_made({"alg": "HS256", "kid": "rs256"}, claims(), pub_pem(rsa_key))
# Item 25: kid values.
t["kid_traversal"] = jwt.encode(claims(), secrets["HS256"], "HS256", headers={"kid": "../../etc/passwd"})
t["kid_sql"] = jwt.encode(claims(), secrets["HS256"], "HS256", headers={"kid": "' OR 1=1--"})
t["kid_unknown"] = jwt.encode(claims(), secrets["HS256"], "HS256", headers={"kid": "nope"})
# Item 26: headers pointing at the attacker's key.
t["embedded_jwk"] = jwt.encode(claims(), attacker, "RS256", headers={"kid": "rs256", "jwk": attacker_jwk})
t["jku"] = jwt.encode(claims(), attacker, "RS256", headers={"kid": "rs256", "jku": jku})
t["x5u"] = jwt.encode(claims(), attacker, "RS256", headers={"kid": "rs256", "x5u": jku})
# Item 27: time and audience claims.
t["exp_string"] = hand_made({"alg": "HS256", "kid": "hs256"}, claims(exp=str(now + 600)), secrets["HS256"])
t["nbf_string"] = hand_made({"alg": "HS256", "kid": "hs256"}, claims(nbf=str(now + 600)), secrets["HS256"])
t["exp_missing"] = jwt.encode(claims(exp=None), rsa_key, "RS256", headers={"kid": "rs256"})
t["expired"] = jwt.encode(claims(exp=now - 60), rsa_key, "RS256", headers={"kid": "rs256"})
t["nbf_future"] = jwt.encode(claims(nbf=now + 60), rsa_key, "RS256", headers={"kid": "rs256"})
t["wrong_aud"] = jwt.encode(claims(aud="billing"), rsa_key, "RS256", headers={"kid": "rs256"})
t["wrong_iss"] = jwt.encode(claims(iss="https://evil.test"), rsa_key, "RS256", headers={"kid": "rs256"})
t["tampered"] = (lambda h, p, s: h + "." + b64(json.dumps(claims(tid="globex")).encode()) + "." + s)(
    *t["ok_rs256"].split(".")
)
t["wrong_key"] = jwt.encode(claims(), attacker, "RS256", headers={"kid": "rs256"})

json.dump(t, sys.stdout)
