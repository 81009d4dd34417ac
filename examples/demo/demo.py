"""The Python side of the ehrgate demo.

    demo.py seed     --fhir URL --out cast.json     synthetic patients and staff, straight into the EHR
    demo.py config   --cast cast.json --template T --out gateway.toml --set k=v ... [--redis URL]
    demo.py traffic  --cast cast.json --gateway URL [--gateway URL ...] --key idp.key.pem --fhir URL [--check]
    demo.py findings --rule RULE [--check] < records.jsonl   (from `ehrgate audit query --json`)

`traffic` plays eight personas through the gateway with fhirclient (SMART on FHIR's Python
client), prints what happened per persona, and with --check fails unless every action got
the outcome written next to it: allowed actions must return the EHR's real data, refused ones
the expected rule.

With several `--gateway` replicas (sharing state on Redis: `config --redis`), requests
alternate between them one at a time, as behind a load balancer, and the insider's trawl and
the flood are told replica by replica: each replica sees half of them, and the limits still
hold because the distinct-patient window and the token buckets live in Redis. --check then
also asserts that each replica alone saw too little to trip them, and that both refused.
"""

import argparse
import json
import math
import os
import sys
import time
from collections import Counter, namedtuple

import jwt
import requests
import requests.adapters
from fhirclient import client as fhir_client
from fhirclient.models.observation import Observation

ISSUER = "https://idp.demo.hospital.test"
AUDIENCE = "https://ehrgate.demo.hospital.test/fhir"

POLICIES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "policies")

FAMILIES = ["Nguyen", "Okafor", "Schmidt", "Haddad", "Kowalski", "Silva", "Tanaka",
            "Moreau", "Ivanova", "Mensah", "Lindqvist", "Reyes"]


def seed(args):
    """Patients, their observations and conditions, coverage and claims, written to the EHR."""
    session = requests.Session()
    session.headers["content-type"] = "application/fhir+json"

    def create(resource):
        response = session.post(f"{args.fhir}/{resource['resourceType']}", data=json.dumps(resource))
        response.raise_for_status()
        return response.json()["id"]

    payer = create({"resourceType": "Organization", "name": "Demo Health Plan"})
    patients = []
    observations = {}
    for index, family in enumerate(FAMILIES):
        patient = {"resourceType": "Patient", "name": [{"family": family, "given": [f"Demo{index}"]}],
                   "gender": "female" if index % 2 else "male", "birthDate": f"19{50 + index}-03-0{1 + index % 9}"}
        patient_id = create(patient)
        patients.append(patient_id)
        for code, value in [("8867-4", 70 + index), ("8310-5", 36.6), ("2339-0", 90 + index)]:
            observations.setdefault(patient_id, []).append(create({"resourceType": "Observation", "status": "final",
                    "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
                    "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                    "subject": {"reference": f"Patient/{patient_id}"},
                    "valueQuantity": {"value": value}}))
        create({"resourceType": "Condition", "subject": {"reference": f"Patient/{patient_id}"},
                "code": {"text": "Hypertension"}, "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]}})
        coverage = create({"resourceType": "Coverage", "status": "active",
                           "beneficiary": {"reference": f"Patient/{patient_id}"},
                           "payor": [{"reference": f"Organization/{payer}"}]})
        create({"resourceType": "Claim", "status": "active", "use": "claim",
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "institutional"}]},
                "patient": {"reference": f"Patient/{patient_id}"}, "created": "2026-11-01",
                "provider": {"reference": f"Organization/{payer}"}, "priority": {"coding": [{"code": "normal"}]},
                "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": f"Coverage/{coverage}"}}]})
    cast = {
        "patients": patients,
        "launch_patient": patients[0],
        "other_patient": patients[1],
        # One observation each of the launch patient and the other one, for the writes.
        "own_observation": observations[patients[0]][0],
        "other_observation": observations[patients[1]][0],
        "care_team": {"Practitioner/dr-baker": patients[2:5]},
        "vip": [patients[11]],
    }
    with open(args.out, "w") as out:
        json.dump(cast, out, indent=2)
    print(f"seeded {len(patients)} patients with observations, conditions, coverage and claims")


def config(args):
    """Fills the gateway template's {placeholders} and writes the policies' JSON configs."""
    values = dict(item.split("=", 1) for item in args.set)
    with open(args.cast) as f:
        cast = json.load(f)
    # The anomaly module's care teams and VIP list come from the EHR's data (cast.json).
    with open(values["policies"] + "/anomaly.json") as f:
        anomaly = json.load(f)
    anomaly["care_teams"] = {
        "Practitioner/dr-baker": cast["care_team"]["Practitioner/dr-baker"],
        "Practitioner/dr-adams": [cast["launch_patient"]],
    }
    anomaly["vip"]["patients"] = cast["vip"]
    anomaly_path = values["work"] + "/anomaly.json"
    with open(anomaly_path, "w") as out:
        json.dump(anomaly, out, indent=2)
    values["anomaly_config"] = anomaly_path
    with open(args.template) as f:
        text = f.read()
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    if args.redis:
        text += REDIS_STATE.format(url=args.redis)
    with open(args.out, "w") as out:
        out.write(text)


# Appended by `config --redis URL`: every replica written with it shares the policies'
# state (rate-limit buckets, the anomaly module's distinct-patient windows) on that server.
REDIS_STATE = """
# State shared by the replicas: rate-limit buckets and anomaly windows live on one Redis.
[state]
backend = "redis"

[state.redis]
url = "{url}"
"""


class Balancer(requests.adapters.HTTPAdapter):
    """Round robin over the gateway replicas, one request at a time, as a load balancer in
    front of them would do: clients address the first replica, and each request goes to the
    next replica in turn."""

    def __init__(self, gateways):
        super().__init__()
        self.gateways = gateways
        # The replica (its index) that served each request, in order.
        self.served = []

    def attach(self, session):
        session.mount(self.gateways[0] + "/", self)

    def send(self, request, **kwargs):
        replica = len(self.served) % len(self.gateways)
        self.served.append(replica)
        request.url = self.gateways[replica] + request.url[len(self.gateways[0]):]
        return super().send(request, **kwargs)


def replica_name(replica):
    return "ABCDEFGH"[replica]


# One action: what was asked, what came back (`allow` or `<status> <rule>`), the expected
# outcome (None where the turn depends on counters), the data, and the replica that served
# it (None with one gateway).
Outcome = namedtuple("Outcome", "what outcome expect detail replica")


class Persona:
    """One caller: a token, a fhirclient connection, and a log of outcomes."""

    def __init__(self, name, gateway, key, claims, route="/fhir", balancer=None):
        self.name = name
        now = int(time.time())
        token = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600, **claims},
                           key, algorithm="RS256", headers={"kid": "demo-idp"})
        self.client = fhir_client.FHIRClient(settings={"app_id": claims["client_id"], "api_base": gateway + route + "/"})
        self.client.server.session.headers["Authorization"] = f"Bearer {token}"
        self.balancer = balancer
        if balancer is not None:
            balancer.attach(self.client.server.session)
        self.outcomes = []
        self.checks = []
        # Outcomes that must show up at least once (for actions whose exact turn depends on
        # counters, such as the request where a trawl crosses the volume threshold).
        self.must_see = []

    def act(self, what, call, expect):
        """Runs `call`; records `allow` or `<status> <rule>`; `expect` is the same shape."""
        sent = len(self.balancer.served) if self.balancer else 0
        try:
            result = call(self.client.server)
            outcome = "allow"
            detail = result
        except requests.HTTPError as error:
            outcome = refusal(error.response)
            detail = None
        except Exception as error:  # fhirclient wraps some statuses in its own exceptions
            response = getattr(error, "response", None)
            if response is None:
                raise
            outcome = refusal(response)
            detail = None
        # Every action here is one request; the last one sent is the one that answered.
        replica = self.balancer.served[-1] if self.balancer and len(self.balancer.served) > sent else None
        self.outcomes.append(Outcome(what, outcome, expect, detail, replica))
        return detail

    def check(self, what, verify):
        """Records a fact checked outside the gateway: `verify` returns a problem or None."""
        self.checks.append((what, verify()))


def refusal(response):
    rule = "?"
    try:
        rule = response.json()["issue"][0]["details"]["coding"][0]["code"]
    except (ValueError, KeyError, IndexError, TypeError):
        pass
    return f"{response.status_code} {rule}"


def read(path):
    return lambda server: server.request_json(path)


def search(resource, **params):
    def run(server):
        return resource.where(struct=params).perform_resources(server)
    return run


def post(path, body):
    return lambda server: server.post_json(path, body).json()


def put(path, body):
    return lambda server: server.put_json(path, body).json()


def patch(path, operations):
    """JSON Patch (RFC 6902), which FHIR R4 accepts as `application/json-patch+json`."""
    def run(server):
        response = server.session.patch(server.base_uri + path, data=json.dumps(operations), headers={
            "Content-Type": "application/json-patch+json", "Accept": "application/fhir+json"})
        server.raise_for_status(response)
        return response.json()
    return run


def direct(fhir, path):
    """Reads a resource from the EHR itself, not through the gateway."""
    response = requests.get(f"{fhir}/{path}", headers={"Accept": "application/fhir+json"})
    response.raise_for_status()
    return response.json()


def unchanged(before, after):
    if before == after:
        return None
    return f"changed: version {before.get('meta', {}).get('versionId')} -> {after.get('meta', {}).get('versionId')}, status {before.get('status')} -> {after.get('status')}"


def stale_write_refused(fhir, path):
    current = direct(fhir, path)
    response = requests.put(f"{fhir}/{path}", data=json.dumps(current), headers={
        "Content-Type": "application/fhir+json", "If-Match": 'W/"1"'})
    if response.status_code == 412:
        return None
    return f"a write pinned to version 1 of version {current['meta']['versionId']} got {response.status_code}"


def kickoff(path):
    """Bulk Data kick-off (FHIR Bulk Data IG): 202 Accepted with a status URL, no body."""
    def run(server):
        response = server.session.get(server.base_uri + path, headers={
            "Accept": "application/fhir+json", "Prefer": "respond-async"})
        server.raise_for_status(response)
        return {"kickoff": response.status_code, "status-url": response.headers.get("content-location")}
    return run


def traffic(args):
    with open(args.cast) as f:
        cast = json.load(f)
    with open(args.key) as f:
        key = f.read()
    me, other = cast["launch_patient"], cast["other_patient"]
    team = cast["care_team"]["Practitioner/dr-baker"]
    stranger = cast["patients"][8]
    personas = []
    gateways = args.gateway
    balancer = Balancer(gateways) if len(gateways) > 1 else None
    if balancer:
        print("requests alternate between " + ", ".join(
            f"replica {replica_name(i)} ({url})" for i, url in enumerate(gateways)) + ", one at a time")

    def persona(name, claims, route="/fhir"):
        p = Persona(name, gateways[0], key, claims, route, balancer)
        personas.append(p)
        return p

    clinician = persona("clinician (patient launch)", {
        "sub": "dr-adams", "client_id": "ward-app", "roles": ["physician"], "patient": me,
        "fhirUser": "Practitioner/dr-adams",
        "scope": "launch/patient openid fhirUser patient/Patient.r patient/Observation.rs patient/Condition.rs"})
    clinician.act("read own patient", read(f"Patient/{me}"), "allow")
    clinician.act("search own observations", search(Observation, patient=me), "allow")
    clinician.act("search own conditions", read(f"Condition?patient={me}"), "allow")
    clinician.act("read another patient", read(f"Patient/{other}"), "403 least-privilege.compartment")
    clinician.act("search another patient's observations", search(Observation, patient=other), "403 least-privilege.compartment")
    clinician.act("search observations of everyone", read("Observation"), "403 least-privilege.compartment")

    carer = persona("clinician (care team)", {
        "sub": "dr-baker", "client_id": "ward-app", "roles": ["physician"],
        "fhirUser": "Practitioner/dr-baker", "scope": "openid fhirUser user/Patient.rs user/Observation.rs"})
    for patient in team:
        carer.act("read a care-team patient", read(f"Patient/{patient}"), "allow")
    carer.act("delete a patient", lambda s: s.delete_json(f"Patient/{team[0]}"), "403 least-privilege.scope")

    clerk = persona("billing clerk", {
        "sub": "clerk-carter", "client_id": "billing-desk", "roles": ["billing-clerk"],
        "scope": "openid user/Claim.rs user/Coverage.rs user/ExplanationOfBenefit.rs user/Patient.r"}, route="/billing")
    clerk.act("search a patient's claims", read(f"Claim?patient={me}"), "allow")
    clerk.act("search a patient's coverage", read(f"Coverage?beneficiary=Patient/{me}"), "allow")
    clerk.act("read clinical observations", read(f"Observation?patient={me}"), "404 route.resource-type")

    backend = persona("bulk-export backend", {
        "sub": "analytics-export", "client_id": "analytics-export",
        "scope": "system/Patient.rs system/Observation.rs"})
    backend.act("export patients and observations", kickoff("$export?_type=Patient,Observation"), "allow")
    backend.act("export conditions it was not granted", kickoff("$export?_type=Patient,Condition"), "403 least-privilege.export-type")

    insider = persona("insider trawling charts", {
        "sub": "nurse-ivan", "client_id": "ward-app", "roles": ["nurse"],
        "fhirUser": "Practitioner/nurse-ivan", "scope": "openid fhirUser user/Patient.rs user/Observation.rs"})
    for family in FAMILIES:
        insider.act("name search", read(f"Patient?family={family}"), None)
    for patient in cast["patients"]:
        insider.act("open a chart", read(f"Patient/{patient}"), None)
    insider.must_see = ["allow", "403 anomaly.deny"]

    attacker = persona("compromised app", {
        "sub": "dr-adams", "client_id": "rogue-app", "roles": ["physician"], "patient": me,
        "scope": "launch/patient patient/Patient.rs patient/Observation.rs"})
    attacker.act("_revinclude everything", read(f"Patient?_id={me}&_revinclude=*"), "403 least-privilege.include")
    attacker.act("_include with :iterate", read(f"Observation?patient={me}&_include:iterate=Observation:subject"), "403 least-privilege.include")
    attacker.act("chained search across patients", read("Observation?subject.family=Okafor"), "403 least-privilege.chain")
    attacker.act("_has reverse chain", read("Patient?_has:Observation:subject:code=8867-4"), "403 least-privilege.chain")
    attacker.act("type-level $everything", read("Patient/$everything"), "403 least-privilege.operation")
    attacker.act("duplicate patient parameters", read(f"Observation?patient={me}&patient={other}"), "400 canonical.duplicate-governing-parameter")
    attacker.act("path traversal to another chart", read(f"Patient/{me}/%2e%2e/{other}"), "400 canonical.dot-segment")
    attacker.act("batch with another patient's chart", post("", {
        "resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": f"Observation?patient={me}"}},
            {"request": {"method": "GET", "url": f"Patient/{other}"}}]}), "403 least-privilege.compartment")

    # A patient's own app, allowed to update their observations: the gateway reads the
    # stored resource before every update, patch or delete by id, so the body's subject
    # cannot make another patient's record the app's own.
    app = persona("patient app (writes)", {
        "sub": "patient-user-0", "client_id": "patient-app", "patient": me, "fhirUser": f"Patient/{me}",
        "scope": "launch/patient patient/Observation.rus"})
    own_obs, other_obs = cast["own_observation"], cast["other_observation"]
    before = direct(args.fhir, f"Observation/{other_obs}")
    app.act("overwrite another patient's observation by id", put(f"Observation/{other_obs}", {
        "resourceType": "Observation", "id": other_obs, "status": "entered-in-error",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{me}"}}), "403 least-privilege.stored-owner")
    app.act("patch another patient's observation by id", patch(f"Observation/{other_obs}", [
        {"op": "replace", "path": "/status", "value": "entered-in-error"}]), "403 least-privilege.stored-owner")
    app.check("the other patient's observation, read from the EHR, is unchanged",
              lambda: unchanged(before, direct(args.fhir, f"Observation/{other_obs}")))
    own = direct(args.fhir, f"Observation/{own_obs}")
    own["status"] = "amended"
    app.act("update its own observation", put(f"Observation/{own_obs}", own), "allow")
    app.act("patch its own observation", patch(f"Observation/{own_obs}", [
        {"op": "replace", "path": "/status", "value": "corrected"}]), "allow")
    # The race: the gateway pins every write to the version it read (If-Match). That holds
    # only where the EHR honours If-Match, as sekmet-fhir does for update and patch.
    app.check("the EHR refuses a write pinned to a version it no longer holds",
              lambda: stale_write_refused(args.fhir, f"Observation/{own_obs}"))

    flood = persona("flooding client", {
        "sub": "kiosk-7", "client_id": "lobby-kiosk", "roles": ["nurse"], "patient": me,
        "scope": "launch/patient patient/Patient.r"})
    flood_started = time.monotonic()
    for _ in range(40):
        flood.act("read", read(f"Patient/{me}"), None)
    flood_seconds = time.monotonic() - flood_started
    flood.must_see = ["allow", "429 rate-limit.user"]

    if balancer:
        across_replicas(insider, flood, flood_seconds, len(gateways), args.policies)
    report(personas, check=args.check, replicas=len(gateways) if balancer else 0)


def across_replicas(insider, flood, flood_seconds, replicas, policies):
    """The insider's trawl and the flood, replica by replica, with the checks that make the
    point: no replica alone saw enough to trip the limit, and every replica refused."""
    with open(os.path.join(policies, "anomaly.json")) as f:
        limit = json.load(f)["volume"]["max_distinct_patients"]
    with open(os.path.join(policies, "rate-limit.json")) as f:
        kiosk = next(t for t in json.load(f)["tiers"] if "lobby-kiosk" in t["clients"])["user"]
    names = [replica_name(i) for i in range(replicas)]
    share = "half" if replicas == 2 else f"1/{replicas}"

    print()
    print(f"{insider.name}: one chart per request, each new patient (the anomaly policy allows "
          f"{limit} distinct patients an hour)")
    charts = [o for o in insider.outcomes if o.what == "open a chart"]
    seen = Counter()
    for number, o in enumerate(charts, 1):
        seen[o.replica] += 1
        print(f"  chart {number:>2}  replica {replica_name(o.replica)}"
              f" (its chart {seen[o.replica]:>2})  {o.outcome}")
    refused = Counter(o.replica for o in charts if o.outcome == "403 anomaly.deny")
    print(f"  each replica served only {share} of the charts ({split(seen, names)}), within the limit of"
          f" {limit} had it counted alone;")
    print(f"  the distinct-patient window lives in Redis: it counted all {len(charts)} and the replicas"
          f" refused {sum(refused.values())} ({split(refused, names)})")
    most_seen = max(seen.values(), default=0)
    insider.check(f"each replica served at most {limit} of the charts (the volume limit)",
                  lambda: None if most_seen <= limit else f"a replica served {most_seen}")
    insider.check("every replica refused a chart (anomaly.deny)",
                  lambda: None if len(refused) == replicas else f"refusals by replica: {split(refused, names)}")

    print()
    served = Counter(o.replica for o in flood.outcomes)
    allowed = sum(1 for o in flood.outcomes if o.outcome == "allow")
    limited = Counter(o.replica for o in flood.outcomes if o.outcome == "429 rate-limit.user")
    # The bucket starts full and refills while the flood runs (a token every few seconds).
    refilled = math.ceil(flood_seconds * 1000 * kiosk["refill"] / kiosk["period_ms"])
    print(f"{flood.name}: {len(flood.outcomes)} reads in {flood_seconds:.1f} s against a bucket of"
          f" {kiosk['capacity']} per user")
    print(f"  each replica served only {share} of them ({split(served, names)}), no more than a bucket of its"
          f" own would let through;")
    print(f"  the bucket lives in Redis: it let {allowed} through in total and the replicas refused"
          f" {sum(limited.values())} ({split(limited, names)})")
    most_served = max(served.values(), default=0)
    flood.check(f"each replica served at most {kiosk['capacity']} reads (the bucket's capacity)",
                lambda: None if most_served <= kiosk["capacity"] else f"a replica served {most_served}")
    flood.check(f"at most {kiosk['capacity'] + refilled} reads allowed in total (the capacity and its refill)",
                lambda: None if allowed <= kiosk["capacity"] + refilled else f"{allowed} allowed")
    flood.check("every replica refused reads (rate-limit.user)",
                lambda: None if len(limited) == replicas else f"refusals by replica: {split(limited, names)}")


def split(counts, names):
    """`A 6, B 6`: a count per replica."""
    return ", ".join(f"{name} {counts[i]}" for i, name in enumerate(names))


def report(personas, check, replicas=0):
    """The table of outcomes per persona (with several replicas, how many each served), and
    with `check` every expectation checked."""
    names = [replica_name(i) for i in range(replicas)]
    by_replica = f" {' / '.join(names):>9}" if replicas else ""
    print()
    print(f"{'persona':<30} {'requests':>8}{by_replica} {'allowed':>8} {'denied':>7}  by rule")
    print("-" * 100)
    failures = []
    for p in personas:
        counts = Counter("allow" if o.outcome == "allow" else "denied" for o in p.outcomes)
        rules = Counter(o.outcome.split(" ", 1)[1] for o in p.outcomes if o.outcome != "allow")
        by_rule = ", ".join(f"{rule} x{n}" for rule, n in rules.most_common())
        if replicas:
            served = Counter(o.replica for o in p.outcomes)
            by_replica = f" {' / '.join(str(served[i]) for i in range(replicas)):>9}"
        print(f"{p.name:<30} {len(p.outcomes):>8}{by_replica} {counts['allow']:>8} {counts['denied']:>7}  {by_rule}")
        for what, outcome, expect, detail, _ in p.outcomes:
            if expect is None:
                continue
            if outcome != expect:
                failures.append(f"{p.name}: {what}: expected {expect}, got {outcome}")
            elif outcome == "allow" and not real_data(detail):
                failures.append(f"{p.name}: {what}: allowed but no FHIR data came back")
        for what, problem in p.checks:
            if problem is not None:
                failures.append(f"{p.name}: {what}: {problem}")
        seen = {o.outcome for o in p.outcomes}
        for wanted in p.must_see:
            if wanted not in seen:
                failures.append(f"{p.name}: never saw `{wanted}`; saw {sorted(seen)}")
    if check:
        print()
        if failures:
            for failure in failures:
                print("FAILED", failure)
            print(f"{len(failures)} failed")
            sys.exit(1)
        total = sum(1 for p in personas for o in p.outcomes if o.expect is not None)
        total += sum(len(p.must_see) + len(p.checks) for p in personas)
        print(f"{total} passed, 0 failed")


def findings(args):
    """One line per audit record (JSON lines from `ehrgate audit query --json`): the request,
    the decision, and the finding `--rule` with its detail, which the table leaves out."""
    shown = 0
    for line in sys.stdin:
        record = json.loads(line)
        for finding in record["findings"]:
            if finding["rule"] == args.rule:
                print(f"  seq {record['seq']:>3}  {record['method']} {record['path']:<48} {record['status']} "
                      f"{record['rule'] or 'allow'}  {finding['rule']}: {finding['detail']}")
                shown += 1
    if shown == 0:
        print(f"  no record with a `{args.rule}` finding")
        if args.check:
            sys.exit(1)


def real_data(detail):
    if detail is None:
        return False
    if isinstance(detail, list):
        return all(hasattr(r, "id") for r in detail)
    if isinstance(detail, dict):
        return "resourceType" in detail or detail.get("kickoff") == 202
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("seed")
    p.add_argument("--fhir", required=True)
    p.add_argument("--out", required=True)
    p = commands.add_parser("config")
    p.add_argument("--cast", required=True)
    p.add_argument("--template", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--redis", metavar="URL", help="state shared with other replicas on this Redis")
    p = commands.add_parser("traffic")
    p.add_argument("--cast", required=True)
    p.add_argument("--gateway", action="append", required=True,
                   help="a gateway's base URL; given more than once, requests alternate between them")
    p.add_argument("--policies", default=POLICIES, help="the policies' configs, for their limits")
    p.add_argument("--key", required=True)
    p.add_argument("--fhir", required=True, help="the EHR's own base URL, to check writes directly")
    p.add_argument("--check", action="store_true")
    p = commands.add_parser("findings")
    p.add_argument("--rule", required=True)
    p.add_argument("--check", action="store_true", help="fail when no record has the finding")
    args = parser.parse_args()
    {"seed": seed, "config": config, "traffic": traffic, "findings": findings}[args.command](args)


if __name__ == "__main__":
    main()
