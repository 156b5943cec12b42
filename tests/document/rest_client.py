# The REST client of MLServer's streaming example, with `mlserver` replaced by
# `streamwise` in its imports. The test that runs it substitutes the port (8080 here) and
# runs it from this folder.
import httpx
from httpx_sse import connect_sse

from streamwise import types
from streamwise.codecs import StringCodec

inference_request = types.InferenceRequest.parse_file("./generate-request.json")

with httpx.Client() as client:
    with connect_sse(
        client,
        "POST",
        "http://localhost:8080/v2/models/text-model/generate_stream",
        json=inference_request.dict(),
    ) as event_source:
        for sse in event_source.iter_sse():
            response = types.InferenceResponse.parse_raw(sse.data)
            print(StringCodec.decode_output(response.outputs[0]))
