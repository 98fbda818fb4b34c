"""The Mozilla HTTP Observatory's header scoring, for the tests that the site would grade A+.

The `httpobs` scanner on PyPI (0.9.3) cannot be installed from requirements files: it requires
psycopg2 and uWSGI built from source, and celery, for its hosted service. So the rules are
transcribed here from its published grader (``httpobs/scanner/grader/grade.py`` and
the scoring document in its docs folder, github.com/mozilla/http-observatory 0.9.3): every
test starts from 100 and adds its modifier; 100 or more is A+ (grade table: 100 -> A+,
90 -> A, ...).
Only the tests that apply to a JSON API over HTTPS are transcribed: CSP, cookies (none set),
redirection, Referrer-Policy, HSTS, Subresource Integrity (no HTML: not applicable),
X-Content-Type-Options, X-Frame-Options and X-XSS-Protection (0.9.3 still scores it; the
current MDN Observatory dropped that test, so a site that passes here passes there).
"""

from __future__ import annotations

# (test, result) -> score modifier, from httpobs's grader (SCORE_TABLE), for the results below.
MODIFIERS = {
    "csp-implemented-with-no-unsafe-default-src-none": 10,
    "csp-implemented-with-no-unsafe": 5,
    "csp-implemented-with-unsafe-inline": -20,
    "csp-not-implemented": -25,
    "hsts-implemented-max-age-at-least-six-months": 0,
    "hsts-implemented-max-age-less-than-six-months": -10,
    "hsts-not-implemented": -20,
    "redirection-to-https": 0,
    "redirection-off-host-from-http": -5,
    "redirection-missing": -20,
    "referrer-policy-private": 5,
    "referrer-policy-unsafe": -5,
    "referrer-policy-not-implemented": 0,
    "x-content-type-options-nosniff": 0,
    "x-content-type-options-not-implemented": -5,
    "x-frame-options-implemented-via-csp": 5,
    "x-frame-options-sameorigin-or-deny": 0,
    "x-frame-options-not-implemented": -20,
    "x-xss-protection-enabled-mode-block": 0,
    "x-xss-protection-not-needed-due-to-csp": 0,
    "x-xss-protection-not-implemented": -10,
}
SIX_MONTHS = 15768000
PRIVATE_REFERRERS = {
    "no-referrer",
    "same-origin",
    "strict-origin",
    "strict-origin-when-cross-origin",
}


def grade(score: int) -> str:
    chart = ((100, "A+"), (90, "A"), (85, "A-"), (80, "B+"), (70, "B"), (65, "B-"), (60, "C+"),
             (50, "C"), (45, "C-"), (40, "D+"), (30, "D"), (25, "D-"))  # fmt: skip
    for floor, letter in chart:
        if score >= floor:
            return letter
    return "F"


def _csp(policy: str) -> dict[str, str]:
    directives = {}
    for part in policy.split(";"):
        name, _, value = part.strip().partition(" ")
        if name:
            directives[name.lower()] = value.strip()
    return directives


def results(headers: dict[str, str], redirect: str) -> dict[str, str]:
    """Each test's result for the HTTPS response's headers and the HTTP redirect's result."""
    h = {k.lower(): v for k, v in headers.items()}
    csp = _csp(h.get("content-security-policy", ""))
    out = {}
    if not csp:
        out["csp"] = "csp-not-implemented"
    elif "'unsafe-inline'" in " ".join(csp.values()):
        out["csp"] = "csp-implemented-with-unsafe-inline"
    elif csp.get("default-src") == "'none'":
        out["csp"] = "csp-implemented-with-no-unsafe-default-src-none"
    else:
        out["csp"] = "csp-implemented-with-no-unsafe"
    hsts = h.get("strict-transport-security", "")
    age = next((int(p.split("=")[1]) for p in hsts.split(";") if p.strip().startswith("max-age=")),
               None)  # fmt: skip
    if age is None:
        out["hsts"] = "hsts-not-implemented"
    else:
        out["hsts"] = ("hsts-implemented-max-age-at-least-six-months" if age >= SIX_MONTHS
                       else "hsts-implemented-max-age-less-than-six-months")  # fmt: skip
    out["redirection"] = redirect
    referrer = h.get("referrer-policy", "").lower()
    out["referrer"] = (
        "referrer-policy-not-implemented" if not referrer
        else "referrer-policy-private" if referrer in PRIVATE_REFERRERS
        else "referrer-policy-unsafe"
    )  # fmt: skip
    out["xcto"] = ("x-content-type-options-nosniff" if h.get("x-content-type-options") == "nosniff"
                   else "x-content-type-options-not-implemented")  # fmt: skip
    if csp.get("frame-ancestors") == "'none'":
        out["xfo"] = "x-frame-options-implemented-via-csp"
    elif h.get("x-frame-options", "").upper() in ("DENY", "SAMEORIGIN"):
        out["xfo"] = "x-frame-options-sameorigin-or-deny"
    else:
        out["xfo"] = "x-frame-options-not-implemented"
    xxp = h.get("x-xss-protection", "")
    # 0.9.3: a CSP without unsafe-inline makes the header unneeded only if default-src or
    # script-src is restricted; that is what the CSP result above says.
    if xxp.startswith("1; mode=block"):
        out["xxp"] = "x-xss-protection-enabled-mode-block"
    elif out["csp"].startswith("csp-implemented-with-no-unsafe"):
        out["xxp"] = "x-xss-protection-not-needed-due-to-csp"
    else:
        out["xxp"] = "x-xss-protection-not-implemented"
    return out


def score(headers: dict[str, str], redirect: str) -> int:
    return 100 + sum(MODIFIERS[r] for r in results(headers, redirect).values())
