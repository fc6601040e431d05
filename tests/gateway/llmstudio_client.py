"""Run by test_llmstudio.py inside its own virtualenv (llmstudio-proxy pins openai<2,
fastapi<0.116):
LLMstudio's published ``LLMProxyProvider`` against a Switchboard, streaming and not."""

import json
import sys

from llmstudio_proxy.provider import LLMProxyProvider, ProxyConfig

url, provider, model = sys.argv[1:4]
llm = LLMProxyProvider(provider=provider, proxy_config=ProxyConfig(url=url))
result = llm.chat("Say hello.", model, parameters={"max_tokens": 8, "temperature": 0})
chunks = list(llm.chat("Say hello.", model, is_stream=True,
                       parameters={"max_tokens": 8, "temperature": 0}))
print(json.dumps({
    "type": type(result).__name__,
    "chat_output": result.chat_output,
    "content": result.choices[0].message.content,
    "metrics": result.metrics,
    "provider": result.provider,
    "stream_types": sorted({type(c).__name__ for c in chunks}),
    "stream_text": "".join(getattr(c, "chat_output_stream", "") or "" for c in chunks),
    "stream_final_output": chunks[-1].chat_output,
    "stream_metrics": chunks[-1].metrics,
}))
