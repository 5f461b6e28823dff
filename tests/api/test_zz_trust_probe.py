from tests.api.test_bad_input import *  # noqa: F403
from tests.api.test_bad_input import _json_routes, _held


def test_probe_form_typed_nan(call, token, jpn_node):  # noqa: ANN001, ANN201
    out = []
    for ctype in ("application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=utf-8"):
        for method, path in _json_routes(jpn_node) + [("POST", "/taxii2/x/collections/x/objects/")]:
            label = json.dumps(jpn_label(classification="秘"), ensure_ascii=False)
            body = f'{{"label": {label}, "payload": {{"n": NaN}}, "items": [{{"id": "a", "n": NaN}}]}}'.encode()
            r = call(method, path, token, content=body, headers={"content-type": ctype, "accept": "application/taxii+json;version=2.1"})
            out.append((ctype, method, path, r.status_code, r.text[:160]))
    bad = [o for o in out if o[3] < 300 or "NaN" not in o[4] and "body" not in o[4]]
    for o in bad:
        print(o)
    assert not [o for o in out if o[3] < 300], out
