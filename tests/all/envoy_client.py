"""Envoy's side of ext_proc and ext_authz, from Envoy's own published protos (the
`xds-protos` package) and grpcio: nothing here was written by Palisade.

usage: envoy_client.py GRPC_ADDR UPSTREAM_ADDR < cases.json

Each case is {"kind": "ext_proc" | "ext_authz" | "health", ...}. An ext_proc case is
carried as Envoy's filter does with `processing_mode { request_header_mode: SEND,
response_header_mode: SEND, request_body_mode: NONE, response_body_mode: NONE }` and
`allow_mode_override: true`: the headers go first, a body only when the processor's
`mode_override` asks for it (BUFFERED: the whole body in one message), mutations are
applied to what goes upstream and back, an immediate response ends the exchange. The
request goes to the real upstream at UPSTREAM_ADDR over HTTP/1.1. Prints one JSON result
per case, as a list.
"""

import faulthandler
import http.client
import json
import os
import queue
import sys

import grpc
from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2 as pm
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as epg
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

# A hung exchange shows where it hangs and ends the run instead of the test suite.
faulthandler.dump_traceback_later(60, exit=True)
grpc_addr, upstream = sys.argv[1], sys.argv[2]
if os.environ.get("PALISADE_TLS_CA"):
    # TLS to the listener (`[envoy] tls`), as Envoy's `tls_context` on the gRPC cluster;
    # a client certificate when one is given.
    def read(var):
        path = os.environ.get(var)
        return open(path, "rb").read() if path else None

    credentials = grpc.ssl_channel_credentials(
        root_certificates=read("PALISADE_TLS_CA"),
        private_key=read("PALISADE_TLS_KEY"),
        certificate_chain=read("PALISADE_TLS_CERT"),
    )
    channel = grpc.secure_channel(
        grpc_addr, credentials, options=[("grpc.ssl_target_name_override", "localhost")]
    )
else:
    channel = grpc.insecure_channel(grpc_addr)
HVO = base_pb2.HeaderValueOption


def header_map(pairs):
    return base_pb2.HeaderMap(
        headers=[base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in pairs]
    )


def apply(headers, mutation):
    """Envoy's HeaderMutation semantics on a list of (name, value)."""
    for name in mutation.remove_headers:
        headers = [(k, v) for k, v in headers if k != name.lower()]
    for opt in mutation.set_headers:
        k = opt.header.key.lower()
        v = (opt.header.raw_value or opt.header.value.encode()).decode()
        present = any(n == k for n, _ in headers)
        if opt.append_action == HVO.OVERWRITE_IF_EXISTS_OR_ADD:
            headers = [(n, x) for n, x in headers if n != k] + [(k, v)]
        elif opt.append_action == HVO.APPEND_IF_EXISTS_OR_ADD:
            headers.append((k, v))
        elif opt.append_action == HVO.ADD_IF_ABSENT and not present:
            headers.append((k, v))
        elif opt.append_action == HVO.OVERWRITE_IF_EXISTS and present:
            headers = [(n, x) for n, x in headers if n != k] + [(k, v)]
    return headers


def common(headers, body, response):
    """A CommonResponse applied: (headers, body)."""
    if response.HasField("header_mutation"):
        headers = apply(headers, response.header_mutation)
    if response.HasField("body_mutation"):
        m = response.body_mutation
        if m.WhichOneof("mutation") == "body":
            body = m.body
        elif m.WhichOneof("mutation") == "clear_body" and m.clear_body:
            body = b""
    return headers, body


def immediate(r):
    i = r.immediate_response
    headers = apply([], i.headers)
    return {"status": i.status.code, "headers": dict(headers), "body": i.body.decode()}


def pseudo(headers, name):
    return next((v for k, v in headers if k == name), None)


streams = []


def ext_proc(case):
    q = queue.Queue()
    # The route name, as ExtProcPerRoute.overrides.grpc_initial_metadata sets it.
    metadata = (("x-palisade-route", case["route"]),) if "route" in case else None
    stream = epg.ExternalProcessorStub(channel).Process(iter(q.get, None), timeout=20, metadata=metadata)
    mode = pm.ProcessingMode(
        request_header_mode=pm.ProcessingMode.SEND,
        response_header_mode=pm.ProcessingMode.SEND,
        request_body_mode=pm.ProcessingMode.NONE,
        response_body_mode=pm.ProcessingMode.NONE,
    )
    # An Envoy configured with STREAMED bodies and without allow_mode_override: it
    # ignores Palisade's mode and sends every body in pieces.
    streamed = case.get("streamed", False)
    if streamed:
        mode.request_body_mode = pm.ProcessingMode.STREAMED
        mode.response_body_mode = pm.ProcessingMode.STREAMED
    seen = {"bodies_sent": []}

    def ask(message):
        q.put(message)
        r = next(stream)
        if r.HasField("mode_override") and not streamed:
            mode.CopyFrom(r.mode_override)
        return r

    body = case.get("body", "").encode()
    headers = [
        (":method", case["method"]),
        (":path", case["path"]),
        (":authority", case.get("authority", "envoy.test")),
        (":scheme", "http"),
    ] + [(k.lower(), v) for k, v in case.get("headers", {}).items()]
    first = ep.ProcessingRequest(
        request_headers=ep.HttpHeaders(headers=header_map(headers), end_of_stream=not body)
    )
    # Headers Envoy's forward_rules hide from the processor are still in Envoy's map:
    # mutations apply to them, and they go upstream unless removed.
    headers = headers + [(k.lower(), v) for k, v in case.get("hidden", {}).items()]
    if "source" in case:
        first.attributes["envoy.filters.http.ext_proc"].CopyFrom(
            struct_pb2.Struct(fields={"source.address": struct_pb2.Value(string_value=case["source"])})
        )
    try:
        r = ask(first)
        if r.HasField("immediate_response"):
            return {"immediate": immediate(r), "at": "request_headers", **seen}
        headers, body = common(headers, body, r.request_headers.response)
        if body and mode.request_body_mode == pm.ProcessingMode.STREAMED:
            # The first piece, then (unless Palisade answered for good) the rest.
            seen["bodies_sent"].append("request")
            half = len(body) // 2
            r = ask(ep.ProcessingRequest(request_body=ep.HttpBody(body=body[:half], end_of_stream=False)))
            if r.HasField("immediate_response"):
                return {"immediate": immediate(r), "at": "request_body", **seen}
            seen["passed_piece"] = r.request_body.response.SerializeToString().decode("latin-1")
        if body and mode.request_body_mode == pm.ProcessingMode.BUFFERED:
            seen["bodies_sent"].append("request")
            r = ask(ep.ProcessingRequest(request_body=ep.HttpBody(body=body, end_of_stream=True)))
            if r.HasField("immediate_response"):
                return {"immediate": immediate(r), "at": "request_body", **seen}
            headers, body = common(headers, body, r.request_body.response)

        if "while_open" in case:
            # Another request while this one is still in flight (holding its admission).
            seen["while_open"] = ext_proc(case["while_open"])

        # Upstream: what Envoy's router would send. Envoy refuses a body whose
        # content-length the mutations left wrong.
        length = pseudo(headers, "content-length")
        if length is not None and int(length) != len(body):
            return {"envoy_error": "content-length mismatch", **seen}
        conn = http.client.HTTPConnection(upstream, timeout=20)
        plain = [(k, v) for k, v in headers if not k.startswith(":") and k != "content-length"]
        conn.putrequest(pseudo(headers, ":method"), pseudo(headers, ":path"), skip_accept_encoding=True)
        for k, v in plain:
            conn.putheader(k, v)
        conn.putheader("content-length", str(len(body)))
        conn.endheaders(body)
        res = conn.getresponse()
        res_body = res.read()
        res_headers = [(":status", str(res.status))] + [(k.lower(), v) for k, v in res.getheaders()]
        sent_upstream = {"method": pseudo(headers, ":method"), "path": pseudo(headers, ":path")}

        r = ask(
            ep.ProcessingRequest(
                response_headers=ep.HttpHeaders(headers=header_map(res_headers), end_of_stream=not res_body)
            )
        )
        if r.HasField("immediate_response"):
            return {"immediate": immediate(r), "at": "response_headers", "upstream": sent_upstream, **seen}
        res_headers, res_body = common(res_headers, res_body, r.response_headers.response)
        if res_body and mode.response_body_mode == pm.ProcessingMode.BUFFERED:
            seen["bodies_sent"].append("response")
            r = ask(ep.ProcessingRequest(response_body=ep.HttpBody(body=res_body, end_of_stream=True)))
            if r.HasField("immediate_response"):
                return {"immediate": immediate(r), "at": "response_body", "upstream": sent_upstream, **seen}
            res_headers, res_body = common(res_headers, res_body, r.response_body.response)
        return {
            "upstream": sent_upstream,
            "status": int(pseudo(res_headers, ":status")),
            "headers": {k: v for k, v in res_headers if not k.startswith(":")},
            "body": res_body.decode(),
            **seen,
        }
    except grpc.RpcError as e:
        return {"grpc_error": e.code().name, "details": e.details(), **seen}
    finally:
        q.put(None)
        # Closed here, not by the garbage collector: grpc's Rendezvous.__del__ can
        # deadlock on its own lock when collected at an arbitrary point.
        stream.cancel()
        streams.append(stream)


def ext_authz(case):
    http_req = attribute_context_pb2.AttributeContext.HttpRequest(
        method=case["method"],
        path=case["path"],
        host=case.get("authority", "envoy.test"),
        scheme="http",
        headers={k.lower(): v for k, v in case.get("headers", {}).items()},
        body=case.get("body", ""),
    )
    attrs = attribute_context_pb2.AttributeContext(
        request=attribute_context_pb2.AttributeContext.Request(http=http_req),
        source=attribute_context_pb2.AttributeContext.Peer(
            address=address_pb2.Address(
                socket_address=address_pb2.SocketAddress(address="203.0.113.9", port_value=5555)
            )
        ),
    )
    if "route" in case:
        # ExtAuthzPerRoute.check_settings.context_extensions.
        attrs.context_extensions["palisade_route"] = case["route"]
    stub = external_auth_pb2_grpc.AuthorizationStub(channel)
    try:
        r = stub.Check(external_auth_pb2.CheckRequest(attributes=attrs), timeout=20)
    except grpc.RpcError as e:
        return {"grpc_error": e.code().name, "details": e.details()}
    def authz(options):
        """ext_authz reads `value` (never raw_value) and the `append` flag."""
        out = {}
        for o in options:
            out[o.header.key.lower()] = o.header.value
        return out

    if r.HasField("ok_response"):
        ok = r.ok_response
        return {
            "allowed": True,
            "code": r.status.code,
            "set": authz(ok.headers),
            "remove": list(ok.headers_to_remove),
            "response_headers": authz(ok.response_headers_to_add),
        }
    d = r.denied_response
    return {
        "allowed": False,
        "code": r.status.code,
        "status": d.status.code,
        "headers": authz(d.headers),
        "body": d.body,
    }


def health(case):
    stub = health_pb2_grpc.HealthStub(channel)
    r = stub.Check(health_pb2.HealthCheckRequest(service=case.get("service", "")), timeout=10)
    return {"status": health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)}


results = []
for case in json.load(sys.stdin):
    results.append({"ext_proc": ext_proc, "ext_authz": ext_authz, "health": health}[case["kind"]](case))
print(json.dumps(results))
sys.stdout.flush()
os._exit(0)
