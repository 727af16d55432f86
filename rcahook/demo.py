"""A sample repository to try rcahook on: `python -m rcahook.demo PATH`.

A small "acme" monorepo: Python services (billing, auth), a Go service (search) and a
shared Python HTTP library, owned by eight people through CODEOWNERS. About 300 commits
over 60 days make real edits to real functions; five earlier regressions are fixed by
commits carrying `Fixes:` / `Regression in` references, and the last day brings a fresh
regression (a retry change in libs/http that breaks billing's card charges). The
incident it caused, with a Python stack trace, is written next to the repository as
`PATH-incident.json`. Everything is seeded, so every run writes the same shas; history
is written with one `git fast-import` stream, which takes well under a second.
"""
from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

SEED = 1  # seeds 1-8 all put the regression first or second with the default weights
START = datetime(2024, 3, 4, tzinfo=timezone.utc)  # a Monday
DAYS = 60
INCIDENT_TIME = START + timedelta(days=DAYS - 1, hours=9, minutes=50)

PEOPLE = {  # handle -> (name, email, utc offset in minutes)
    "alice": ("Alice Moreau", "alice@acme.example", 60), "bilal": ("Bilal Haddad", "bilal@acme.example", 120),
    "chen": ("Chen Wei", "chen@acme.example", 480), "dana": ("Dana Kowalski", "dana@acme.example", 60),
    "emeka": ("Emeka Obi", "emeka@acme.example", 60), "freya": ("Freya Lind", "freya@acme.example", 120),
    "grace": ("Grace Park", "grace@acme.example", -300), "hiro": ("Hiro Tanaka", "hiro@acme.example", 540),
}
COMPONENTS = {  # prefix -> (directory, owners, weight of picking it, tests directory)
    "billing": ("services/billing/", ("alice", "bilal"), 5, "tests/billing/"),
    "auth": ("services/auth/", ("chen", "dana"), 4, "tests/auth/"),
    "search": ("services/search/", ("emeka", "freya"), 4, "services/search/"),
    "http": ("libs/http/", ("grace", "hiro"), 2, "tests/http/"),
}


@dataclass
class Func:
    name: str
    params: str  # Python: the parameter list; Go: everything between the name and "{"
    body: list[str]  # relative to the body's indentation
    topic: str  # what commit subjects call it: "retries", "token expiry"
    param: str = ""  # the parameter guards and logs talk about
    zero: str = ""  # Go: what a guard returns
    frozen: bool = False  # only the scripted events edit it (keeps their diffs exact)
    guarded: bool = False


@dataclass
class Source:
    path: str
    header: str
    funcs: list[Func] = field(default_factory=list)

    @property
    def go(self) -> bool:
        return self.path.endswith(".go")

    def render(self) -> str:
        parts = [self.header.rstrip("\n") + "\n"]
        for f in self.funcs:
            if self.go:
                parts.append(f"\nfunc {f.name}{f.params} {{\n" + "".join(f"\t{line}\n" for line in f.body) + "}\n")
            else:
                parts.append(f"\n\ndef {f.name}({f.params}):\n" + "".join(
                    f"    {line}\n" if line else "\n" for line in f.body))
        return "".join(parts)

    def func(self, name: str) -> Func:
        return next(f for f in self.funcs if f.name == name)


_PY = ('"""{doc}"""\nfrom __future__ import annotations\n\nimport logging\n{imports}\n'
       "log = logging.getLogger(__name__)\n")
_GO = ('package search\n\n// {doc}\n\nimport (\n\t"errors"\n\t"log"\n\t"strings"\n)\n\n'
       "var _ = errors.New\nvar _ = strings.TrimSpace\n")


def _py(path: str, doc: str, imports: str, *funcs: Func) -> Source:
    return Source(path, _PY.format(doc=doc, imports=imports), list(funcs))


def _go(path: str, doc: str, *funcs: Func) -> Source:
    return Source(path, _GO.format(doc=doc), list(funcs))


RETRY_BODY = [
    '"""Send a request, retrying connection errors and 5xx answers with backoff."""',
    "last_error = None",
    "for attempt in range(1, max_attempts + 1):",
    "    try:",
    "        response = session.request(method, url, timeout=timeout, **kwargs)",
    "    except (ConnectionError, TimeoutError) as exc:",
    "        last_error = exc",
    "    else:",
    "        if not should_retry(response.status):",
    "            return response",
    "        last_error = HttpStatusError(response.status, url)",
    "    time.sleep(backoff_delay(attempt))",
    'raise RetryExhausted(f"{method} {url} gave up after {max_attempts} attempt(s)", last_error)',
]


def initial_sources() -> dict[str, Source]:
    s = [
        _py("libs/http/retry.py", "Retries with exponential backoff for outgoing HTTP calls.",
            "import random\nimport time\n\nfrom libs.http.errors import HttpStatusError, RetryExhausted\n"
            "from libs.http.timeouts import DEFAULT_TIMEOUT\n",
            Func("backoff_delay", "attempt, *, base=0.2, cap=10.0",
                 ["delay = min(cap, base * 2 ** (attempt - 1))", "return delay * random.uniform(0.5, 1.0)"],
                 "backoff", "attempt", frozen=True),
            Func("should_retry", "status", ["return status >= 500 or status == 429"], "retryable statuses", "status"),
            Func("request_with_retry", "session, method, url, *, max_attempts=4, timeout=DEFAULT_TIMEOUT, **kwargs",
                 list(RETRY_BODY), "retries", "url", frozen=True)),
        _py("libs/http/timeouts.py", "Connect and read timeouts per host.", "\nDEFAULT_TIMEOUT = 5.0\n",
            Func("connect_timeout", "host", ['if host.endswith(".internal"):', "    return 0.5", "return 2.0"],
                 "connect timeouts", "host"),
            Func("read_timeout", "path, *, default=DEFAULT_TIMEOUT",
                 ['if path.startswith("/v1/reports"):', "    return default * 6", "return default"],
                 "read timeouts", "path")),
        _py("libs/http/pool.py", "A small per-host session pool.", "import threading\n\n_sessions = {}\n"
            "_lock = threading.Lock()\n",
            Func("session_for", "host, *, factory",
                 ["with _lock:", "    if host not in _sessions:", "        _sessions[host] = factory(host)",
                  "    return _sessions[host]"], "the session pool", "host"),
            Func("close_idle", "now, *, max_idle=60",
                 ["with _lock:", "    for host, session in list(_sessions.items()):",
                  "        if now - session.last_used > max_idle:", "            session.close()",
                  "            del _sessions[host]"], "idle connections", "now")),
        _py("services/billing/charge.py", "Charging customers.",
            "from services.billing.client import gateway_session, post_charge\n",
            Func("charge_customer", "customer_id, amount_cents, *, currency=\"EUR\"",
                 ['"""Charge the customer\'s default card."""', "if amount_cents <= 0:",
                  '    raise ValueError("amount must be positive")', "session = gateway_session()",
                  "return post_charge(session, customer_id, amount_cents, currency)"], "card charges",
                 "customer_id"),
            Func("compute_total", "items, *, tax_rate=0.2",
                 ["subtotal = sum(item.price_cents * item.quantity for item in items)",
                  "return round(subtotal * (1 + tax_rate))"], "order totals", "items"),
            Func("apply_discount", "total_cents, code",
                 ["if code is None:", "    return total_cents", "percent = DISCOUNTS.get(code, 0)",
                  "return total_cents - total_cents * percent // 100"], "discount codes", "code")),
        _py("services/billing/client.py", "The payment gateway client.",
            "from libs.http.pool import session_for\nfrom libs.http.retry import request_with_retry\n\n"
            'GATEWAY = "https://gateway.payments.example"\n',
            Func("gateway_session", "", ['return session_for(GATEWAY, factory=new_session)'], "gateway sessions",
                 frozen=True),
            Func("post_charge", "session, customer_id, amount_cents, currency",
                 ['payload = {"customer": customer_id, "amount": amount_cents, "currency": currency}',
                  'response = request_with_retry(session, "POST", f"{GATEWAY}/v1/charges", json=payload)',
                  "return response.json()"], "charge requests", "customer_id"),
            Func("refund_charge", "session, charge_id, amount_cents",
                 ['payload = {"charge": charge_id, "amount": amount_cents}',
                  'return request_with_retry(session, "POST", f"{GATEWAY}/v1/refunds", json=payload).json()'],
                 "refunds", "charge_id")),
        _py("services/billing/checkout.py", "Checkout: validate the cart, charge, confirm.",
            "from services.billing.charge import apply_discount, charge_customer, compute_total\n",
            Func("validate_cart", "cart",
                 ["if not cart.items:", '    raise ValueError("empty cart")', "if len(cart.items) > 100:",
                  '    raise ValueError("too many items")'], "cart validation", "cart"),
            Func("complete_checkout", "order",
                 ["validate_cart(order.cart)",
                  "total = apply_discount(compute_total(order.cart.items), order.discount_code)",
                  "charge = charge_customer(order.customer_id, total)",
                  "order.mark_paid(charge[\"id\"])", "return charge"], "checkout", "order")),
        _py("services/billing/invoice.py", "Invoices: numbering, tax lines, rendering.", "",
            Func("invoice_number", "order_id, year", ['return f"INV-{year}-{order_id:08d}"'], "invoice numbers",
                 "order_id"),
            Func("tax_lines", "items, rate",
                 ["lines = []", "for item in items:", "    tax = item.price_cents * item.quantity * rate",
                  "    lines.append((item.sku, round(tax)))", "return lines"], "tax lines", "items", frozen=True),
            Func("render_invoice", "order",
                 ['rows = [f"{sku}: {tax / 100:.2f}" for sku, tax in tax_lines(order.items, 0.2)]',
                  'return "\\n".join([invoice_number(order.id, order.year), *rows])'], "invoice rendering",
                 "order")),
        _py("services/auth/tokens.py", "Access tokens: issue, verify, refresh.", "import time\n\n_SECRET = b\"dev\"\n",
            Func("issue_token", "user_id, *, ttl=3600",
                 ["expires = int(time.time()) + ttl", 'return sign(f"{user_id}:{expires}", _SECRET)'],
                 "token lifetime", "user_id"),
            Func("verify_token", "token",
                 ["user_id, expires = unsign(token, _SECRET).split(\":\")", "if int(expires) < time.time():",
                  "    return None", "return user_id"], "token verification", "token", frozen=True),
            Func("refresh_token", "token, *, grace=300",
                 ["user_id = verify_token(token)", "if user_id is None:", "    return None",
                  "return issue_token(user_id)"], "token refresh", "token")),
        _py("services/auth/sessions.py", "Login sessions.", "import time\n\n_sessions = {}\n",
            Func("create_session", "user_id, ip",
                 ["sid = new_session_id()", "_sessions[sid] = (user_id, ip, time.time())", "return sid"],
                 "session creation", "user_id"),
            Func("expire_sessions", "now, *, max_age=86400",
                 ["for sid, (_, _, created) in list(_sessions.items()):", "    if now - created > max_age:",
                  "        del _sessions[sid]"], "session expiry", "now")),
        _py("services/auth/passwords.py", "Password hashing.", "import hashlib\nimport hmac\nimport os\n",
            Func("hash_password", "password, *, rounds=120000",
                 ["salt = os.urandom(16)", 'digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, rounds)',
                  "return salt + digest"], "password hashing", "password"),
            Func("check_password", "password, hashed, *, rounds=120000",
                 ["salt, digest = hashed[:16], hashed[16:]",
                  'candidate = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, rounds)',
                  "return hmac.compare_digest(candidate, digest)"], "password checks", "password")),
        _go("services/search/query.go", "Query parsing.",
            Func("ParseQuery", "(raw string) (Query, error)",
                 ["terms := strings.Fields(strings.ToLower(raw))", "if len(terms) > 32 {",
                  "\treturn Query{}, errTooManyTerms", "}", "return Query{Terms: terms}, nil"], "query parsing",
                 "raw", "Query{}, errEmptyQuery", frozen=True),
            Func("normalizeTerm", "(t string) string", ['return strings.Trim(t, ".,;:!?\\"")'], "term normalisation",
                 "t", '""')),
        _go("services/search/index.go", "The in-memory inverted index.",
            Func("AddDocument", "(idx *Index, doc Document) error",
                 ["if len(doc.Body) > 1<<20 {", "\treturn errTooLarge", "}", "for _, t := range tokenize(doc.Body) {",
                  "\tidx.postings[t] = append(idx.postings[t], doc.ID)", "}", "return nil"], "indexing", "doc.ID",
                 "errEmptyID"),
            Func("RemoveDocument", "(idx *Index, id string) bool",
                 ["_, ok := idx.docs[id]", "delete(idx.docs, id)", "return ok"], "document removal", "id", "false")),
        _go("services/search/rank.go", "Scoring and top-k selection.",
            Func("Score", "(q Query, doc Document) float64",
                 ["score := 0.0", "for _, t := range q.Terms {", "\tscore += 1.2 * tf(doc, t) / (tf(doc, t) + 0.75)",
                  "}", "return score"], "scoring", "", "0"),
            Func("TopK", "(results []Result, k int) []Result",
                 ["if k > 100 {", "\tk = 100", "}", "sortByScore(results)", "if len(results) > k {",
                  "\tresults = results[:k]", "}", "return results"], "top-k selection", "", "nil")),
        _go("services/search/server.go", "HTTP handlers of the search service.",
            Func("HandleSearch", "(w ResponseWriter, r *Request)",
                 ['q, err := ParseQuery(r.URL.Query().Get("q"))', "if err != nil {",
                  "\thttpError(w, 400, err)", "\treturn", "}", "writeJSON(w, TopK(search(q), 20))"],
                 "the search endpoint", "", "")),
    ]
    return {src.path: src for src in s}


STATIC = {
    "libs/http/errors.py": '"""Errors raised by libs.http."""\n\n\nclass HttpStatusError(Exception):\n'
                           "    def __init__(self, status, url):\n"
                           '        super().__init__(f"{status} from {url}")\n        self.status = status\n\n\n'
                           "class RetryExhausted(Exception):\n    pass\n",
    "README.md": "# acme\n\nThe acme monorepo: billing, auth and search services and shared libraries.\n",
    "CODEOWNERS": "# who reviews what\n*                  @acme/platform\n/services/billing/ @acme/payments "
                  "@alice\n/services/auth/    @acme/identity\n/services/search/  @acme/search\n/libs/http/        "
                  "@acme/platform @grace\n/docs/             @acme/docs\n",
    ".rcahook.toml": "# rcahook settings (see rcahook docs/investigate.md)\nmin-confidence = 0.3\n\n[services]\n"
                     'billing = ["services/billing/"]\nauth = ["services/auth/"]\nsearch = ["services/search/"]\n'
                     'http = ["libs/http/"]\n',
    ".github/workflows/ci.yml": "name: ci\non: [push, pull_request]\njobs:\n  test:\n    runs-on: ubuntu-22.04\n"
                                "    steps:\n      - uses: actions/checkout@v4\n      - uses: actions/setup-python@v5\n"
                                "        with: {python-version: '3.12.1'}\n"
                                "      - run: pip install -r requirements.txt\n"
                                "      - run: pytest -q\n",
    **{f"docs/{name}.md": f"# {name}\n\nHow the {name} component works and how to operate it.\n"
       for name in ("billing", "auth", "search", "http")},
}

# Commit subjects per kind of edit; {c} component, {f} function, {t} topic, {p} parameter.
SUBJECTS = {
    "tune": ["{c}: tune {t} in {f}()", "{c}: adjust {t} after the load test", "{c}: change the {t} default",
             "{c}: revisit {t} limits"],
    "log": ["{c}: log {t} in {f}()", "{c}: add debug logging around {t}", "{c}: include {p} in {f}() logs"],
    "guard": ["{c}: reject empty {p} in {f}()", "{c}: validate {p} before {t}", "{c}: fail early on a missing {p}"],
    "helper": ["{c}: normalise {p} in {f}()", "{c}: strip whitespace from {p} before {t}"],
    "comment": ["{c}: document {t} in {f}()", "{c}: explain the {t} edge cases", "{c}: comment on {t}"],
    "test": ["{c}: test {f}() with {case}", "{c}: add a regression test for {t}", "{c}: cover {t} in tests"],
    "docs": ["docs: describe {t} for {c}", "docs: {c}: clarify {t}", "docs: {c}: add a runbook entry for {t}"],
}
CASES = ("empty input", "unicode input", "large values", "concurrent callers", "a cold cache", "zero amounts")
NOTES = ("callers rely on this order", "see incident review IR-112", "keep in sync with docs/",
         "cheap enough per call", "upstream API rounds identically", "TODO: drop once v2 clients are gone")


@dataclass
class Event:
    """A scripted commit: the culprits, their fixes and the regression."""
    day: float
    who: str
    subject: str
    path: str
    func: str
    body: list[str]
    body_text: str = ""
    fixes: str | None = None  # key of the culprit event it fixes
    style: str = "Fixes"  # or "Regression"
    key: str | None = None


def _edit_retry(old: str, new: str, extra: list[str] | None = None) -> list[str]:
    body = [line.replace(old, new) for line in RETRY_BODY]
    return body[:1] + (extra or []) + body[1:]


EVENTS = [
    Event(8.4, "chen", "auth: cache token verification results", "services/auth/tokens.py", "verify_token",
          ["if token in _verified:", "    return _verified[token]",
           "user_id, expires = unsign(token, _SECRET).split(\":\")", "if int(expires) < time.time():",
           "    return None", "_verified[token] = user_id", "return user_id"],
          "Verification is 20% of login CPU; the same tokens come back many times a minute.", key="auth"),
    Event(10.5, "dana", "auth: do not serve expired tokens from the verification cache", "services/auth/tokens.py",
          "verify_token", ["user_id, expires = unsign(token, _SECRET).split(\":\")", "if int(expires) < time.time():",
                           "    _verified.pop(token, None)", "    return None", "_verified[token] = user_id",
                           "return user_id"], "Expired tokens stayed valid for as long as they were cached.",
          fixes="auth"),
    Event(15.3, "bilal", "billing: compute tax per line item", "services/billing/invoice.py", "tax_lines",
          ["lines = []", "for item in items:", "    tax = round(item.price_cents * rate) * item.quantity",
           "    lines.append((item.sku, tax))", "return lines"], key="tax"),
    Event(17.6, "alice", "billing: round tax after multiplying by quantity", "services/billing/invoice.py",
          "tax_lines", ["lines = []", "for item in items:", "    tax = round(item.price_cents * item.quantity * rate)",
                        "    lines.append((item.sku, tax))", "return lines"],
          "Invoices for many cheap items were off by several cents.", fixes="tax"),
    Event(22.4, "hiro", "http: cap backoff_delay at 2 seconds", "libs/http/retry.py", "backoff_delay",
          ["delay = min(2.0, base * 2 ** (attempt - 1))", "return delay"], key="backoff"),
    Event(23.5, "grace", "http: restore jitter in backoff_delay", "libs/http/retry.py", "backoff_delay",
          ["delay = min(cap, base * 2 ** (attempt - 1))", "return delay * random.uniform(0.5, 1.0)"],
          "Without jitter every client retried in lockstep and the gateway saw bursts.", fixes="backoff"),
    Event(30.4, "freya", "search: drop stop words in ParseQuery", "services/search/query.go", "ParseQuery",
          ["terms := dropStopWords(strings.Fields(strings.ToLower(raw)))", "if len(terms) > 32 {",
           "\treturn Query{}, errTooManyTerms", "}", "return Query{Terms: terms}, nil"], key="stop"),
    Event(35.6, "emeka", "search: keep stop words inside quoted phrases", "services/search/query.go", "ParseQuery",
          ["terms := dropStopWords(splitOutsideQuotes(strings.ToLower(raw)))", "if len(terms) > 32 {",
           "\treturn Query{}, errTooManyTerms", "}", "return Query{Terms: terms}, nil"],
          'Searching for "the who" found nothing.', fixes="stop", style="Regression"),
    Event(42.3, "bilal", "billing: share one gateway session across workers", "services/billing/client.py",
          "gateway_session", ["return _shared.setdefault(GATEWAY, new_session(GATEWAY))"], key="session"),
    Event(44.5, "alice", "billing: give each worker its own gateway session", "services/billing/client.py",
          "gateway_session", ["return session_for(GATEWAY, factory=new_session)"],
          "A shared session is not thread-safe: charges were sent with another worker's headers.", fixes="session"),
    # the regression behind the demo incident
    Event(58.75, "grace", "http: never retry non-idempotent methods", "libs/http/retry.py", "request_with_retry",
          _edit_retry("max_attempts", "attempts",
                      ["attempts = max_attempts if method.upper() in IDEMPOTENT_METHODS else 1"]),
          "Retrying a POST can apply it twice. Only GET, HEAD, PUT, DELETE and OPTIONS are retried now.",
          key="regression"),
]


def _tune(line: str, rng: random.Random) -> str | None:
    numbers = [m for m in re.finditer(r"(?<![\w.])\d+(\.\d+)?(?![\w.])", line) if m.group() not in ("0", "1")]
    if not numbers:
        return None
    m = rng.choice(numbers)
    factor = rng.choice((0.5, 0.75, 1.5, 2, 3))
    value = float(m.group()) * factor
    text = f"{value:g}" if m.group(1) else str(max(int(value), 2))
    return None if text == m.group() else line[:m.start()] + text + line[m.end():]


def random_edit(sources: dict[str, Source], extra: dict[str, str], comp: str, rng: random.Random
                ) -> tuple[str, dict[str, str]] | None:
    """One plausible commit in `comp`: (subject, {path: new content})."""
    directory, _, _, tests = COMPONENTS[comp]
    files = [s for s in sources.values() if s.path.startswith(directory) and s.funcs]
    src = rng.choice(files)
    choices = [f for f in src.funcs if not f.frozen]
    if not choices:
        return None
    f = rng.choice(choices)
    kind = rng.choices(["tune", "log", "guard", "helper", "comment", "test", "docs"], [5, 3, 2, 1, 1, 2, 1])[0]
    fill = {"c": comp, "f": f.name, "t": f.topic, "p": f.param or "input", "case": rng.choice(CASES)}
    start = 1 if f.body and f.body[0].startswith('"""') else 0
    comment = "//" if src.go else "#"
    if kind == "tune":
        tunable = [(i, new) for i, line in enumerate(f.body) if (new := _tune(line, rng))]
        if not tunable:
            return None
        i, new = rng.choice(tunable)
        f.body[i] = new
    elif kind == "log" and f.param:
        call = f'log.Printf("{f.name}: {f.param}=%v", {f.param})' if src.go else \
            f'log.debug("{f.name}: {f.param}=%s", {f.param})'
        if call in f.body:
            return None
        f.body.insert(start, call)
    elif kind == "guard" and f.param and not f.guarded and (f.zero or not src.go) and "." not in f.param:
        f.guarded = True
        f.body[start:start] = ([f'if {f.param} == "" {{', f"\treturn {f.zero}", "}"] if src.go else
                               [f"if {f.param} is None:", f'    raise ValueError("{f.param} is required")'])
    elif kind == "helper" and f.param and "." not in f.param:
        line = f"{f.param} = strings.TrimSpace({f.param})" if src.go else f"{f.param} = str({f.param}).strip()"
        if line in f.body or src.go and not f.zero:
            return None
        f.body.insert(start, line)
    elif kind == "comment":
        note = f"{comment} {rng.choice(NOTES)}"
        spots = [i for i in range(start + 1, len(f.body)) if not f.body[i].lstrip().startswith(comment)]
        if not spots or any(line.strip() == note for line in f.body):
            return None
        i = rng.choice(spots)
        indent = f.body[i][: len(f.body[i]) - len(f.body[i].lstrip())]
        f.body.insert(i, indent + note)
    elif kind == "test":
        module = src.path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        name = re.sub(r"\W+", "_", fill["case"])
        if src.go:
            path = f"{tests}{module}_test.go"
            text = extra.get(path, "package search\n\nimport \"testing\"\n")
            text += f"\nfunc Test{f.name[0].upper()}{f.name[1:]}_{name}(t *testing.T) {{\n\tt.Parallel()\n}}\n"
        else:
            path = f"{tests}test_{module}.py"
            text = extra.get(path, f"from {src.path[:-3].replace('/', '.')} import *  # noqa: F403\n")
            text += f"\n\ndef test_{f.name}_{name}_{rng.randrange(1000)}():\n    assert callable({f.name})\n"
        extra[path] = text
        return rng.choice(SUBJECTS["test"]).format(**fill), {path: text}
    elif kind == "docs":
        path = f"docs/{comp}.md"
        section = f"\n## {f.topic.capitalize()}\n\n{rng.choice(NOTES).capitalize()}.\n"
        extra[path] = extra.get(path, STATIC[path]) + section
        return rng.choice(SUBJECTS["docs"]).format(**fill), {path: extra[path]}
    else:
        return None
    return rng.choice(SUBJECTS[kind]).format(**fill), {src.path: src.render()}


# -- writing history ---------------------------------------------------------------------------

class FastImport:
    """One `git fast-import` process; `mark_sha` asks it for a commit's sha mid-stream."""

    def __init__(self, repo: Path):
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        self.proc = subprocess.Popen(["git", "fast-import", "--quiet", "--done"], cwd=repo, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.marks = 0

    def _data(self, payload: bytes) -> bytes:
        return b"data %d\n" % len(payload) + payload + b"\n"

    def commit(self, who: str, when: datetime, message: str, files: dict[str, str]) -> int:
        name, email, offset = PEOPLE[who]
        sign = "+" if offset >= 0 else "-"
        stamp = f"{int(when.timestamp())} {sign}{abs(offset) // 60:02d}{abs(offset) % 60:02d}"
        self.marks += 1
        out = [f"commit refs/heads/main\nmark :{self.marks}\nauthor {name} <{email}> {stamp}\n"
               f"committer {name} <{email}> {stamp}\n".encode(), self._data(message.encode())]
        if self.marks > 1:
            out.append(f"from :{self.marks - 1}\n".encode())
        for path, content in sorted(files.items()):
            out.append(f"M 100644 inline {path}\n".encode() + self._data(content.encode()))
        self.proc.stdin.write(b"".join(out) + b"\n")  # type: ignore[union-attr]  # stdin=PIPE: never None
        return self.marks

    def mark_sha(self, mark: int) -> str:
        # stdin=PIPE, stdout=PIPE: neither is None
        self.proc.stdin.write(f"get-mark :{mark}\n".encode())  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        return self.proc.stdout.readline().decode().strip()  # type: ignore[union-attr]

    def finish(self) -> None:
        # stdin=PIPE: never None
        self.proc.stdin.write(b"done\n")  # type: ignore[union-attr]
        self.proc.stdin.close()  # type: ignore[union-attr]
        if self.proc.wait() != 0:
            raise RuntimeError("git fast-import failed; is git 2.21 or newer installed?")


@dataclass(frozen=True)
class Demo:
    repo: Path
    incident_file: Path
    culprit: str  # the regression's sha
    commits: int
    fixes: dict[str, str]  # fix sha -> culprit sha, the earlier regressions


def _schedule(rng: random.Random) -> list[tuple[datetime, str, str]]:
    """(time, component, author) of the everyday commits: weekdays, the author's office hours."""
    comps = list(COMPONENTS)
    weights = [COMPONENTS[c][2] for c in comps]
    slots = []
    for day in range(DAYS):
        date = START + timedelta(days=day)
        if date.weekday() >= 5:
            continue
        for _ in range(rng.randint(5, 11)):
            comp = rng.choices(comps, weights)[0]
            owners = COMPONENTS[comp][1]
            who = rng.choice(owners) if rng.random() < 0.8 else rng.choice(list(PEOPLE))
            local = timedelta(hours=9, minutes=rng.randrange(9 * 60 + 30))
            slots.append((date + local - timedelta(minutes=PEOPLE[who][2]), comp, who))
    return sorted(slots)


def generate(path: str | Path, *, seed: int = SEED) -> Demo:
    repo = Path(path)
    if repo.exists() and any(repo.iterdir()):
        raise SystemExit(f"{repo} exists and is not empty; remove it or pick another path")
    repo.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True, env=env)
    rng = random.Random(seed)
    sources = initial_sources()
    extra: dict[str, str] = dict(STATIC)
    fi = FastImport(repo)
    fi.commit("hiro", START + timedelta(hours=7), "Import the acme monorepo\n",
              {**STATIC, **{p: s.render() for p, s in sources.items()}})
    marks: dict[str, int] = {}
    fixes: dict[str, int] = {}
    events = sorted(EVENTS, key=lambda e: e.day)
    last_time = START + timedelta(hours=7)

    def play(e: Event) -> None:
        src = sources[e.path]
        src.func(e.func).body = list(e.body)
        if e.func == "request_with_retry":
            src.header = src.header.rstrip("\n") + \
                '\n\nIDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})\n'
        message = e.subject + "\n" + (f"\n{e.body_text}\n" if e.body_text else "")
        if e.fixes:
            culprit = fi.mark_sha(marks[e.fixes])
            culprit_subject = next(x.subject for x in EVENTS if x.key == e.fixes)
            message += (f"\nFixes: {culprit[:12]} (\"{culprit_subject}\")\n" if e.style == "Fixes" else
                        f"\nRegression in {culprit[:12]}.\n")
        mark = fi.commit(e.who, START + timedelta(days=e.day), message, {e.path: src.render()})
        if e.key:
            marks[e.key] = mark
        if e.fixes:
            fixes[e.fixes] = mark

    for when, comp, who in _schedule(rng):
        while events and START + timedelta(days=events[0].day) <= when:
            e = events.pop(0)
            play(e)
            last_time = START + timedelta(days=e.day)
        if when <= last_time or when >= INCIDENT_TIME - timedelta(minutes=20):
            continue
        for _ in range(8):  # some draws fit no function (nothing to tune, already logged)
            edit = random_edit(sources, extra, comp, rng)
            if edit is not None:
                break
        else:
            continue
        subject, files = edit
        owners = COMPONENTS[comp][1]
        body = ""
        if rng.random() < 0.3:
            body = f"\nReviewed-by: {PEOPLE[rng.choice([p for p in owners if p != who] or list(PEOPLE))][0]}\n"
        fi.commit(who, when, subject + "\n" + body, files)
        last_time = when
    for e in events:
        play(e)
    culprit = fi.mark_sha(marks["regression"])
    fix_shas = {fi.mark_sha(fixes[k]): fi.mark_sha(marks[k]) for k in fixes}
    count = fi.marks
    fi.finish()
    subprocess.run(["git", "reset", "-q", "--hard", "main"], cwd=repo, check=True, env=env)
    incident_file = repo.with_name(repo.name + "-incident.json")
    incident_file.write_text(json.dumps(incident(sources), indent=2) + "\n")
    return Demo(repo, incident_file, culprit, count, fix_shas)


def _line_of(src: Source, needle: str) -> int:
    return next(i + 1 for i, line in enumerate(src.render().splitlines()) if needle in line)


def incident(sources: dict[str, Source]) -> dict:
    """The incident the regression caused, with a traceback that matches the files at HEAD."""
    frames = [("services/billing/checkout.py", "complete_checkout", "charge = charge_customer("),
              ("services/billing/charge.py", "charge_customer", "return post_charge("),
              ("services/billing/client.py", "post_charge", "response = request_with_retry("),
              ("libs/http/retry.py", "request_with_retry", "raise RetryExhausted(")]
    trace = ["Traceback (most recent call last):"]
    for path, func, needle in frames:
        line = _line_of(sources[path], needle)
        code = sources[path].render().splitlines()[line - 1].strip()
        trace += [f'  File "/srv/acme/{path}", line {line}, in {func}', f"    {code}"]
    trace.append("libs.http.errors.RetryExhausted: POST https://gateway.payments.example/v1/charges "
                 "gave up after 1 attempt(s)")
    return {
        "title": "billing: card charges failing with RetryExhausted since the morning deploy",
        "description": ("About 8% of checkouts fail at the payment step since the 09:30 deploy. Sentry shows "
                        "RetryExhausted from the gateway client: the POST to /v1/charges gave up after 1 "
                        "attempt(s) on a gateway timeout. Until yesterday these charges were retried up to 4 "
                        "times. Gateway latency looks normal."),
        "time": INCIDENT_TIME.isoformat().replace("+00:00", "Z"),
        "services": ["billing"],
        "stack_trace": trace,
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m rcahook.demo PATH   (writes a sample repository at PATH and the incident "
              "at PATH-incident.json)", file=sys.stderr)
        return 2
    demo = generate(args[0])
    print(f"wrote {demo.commits} commits to {demo.repo} and the incident to {demo.incident_file}")
    print("next:")
    print(f"  rcahook index --repo {demo.repo}")
    print(f"  rcahook investigate --repo {demo.repo} --incident {demo.incident_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
