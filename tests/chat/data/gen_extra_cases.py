#!/usr/bin/env python3
"""Regenerates chat-template-extra-cases.json: edge cases beyond shared/testdata's 16 renders,
rendered by Jinja2 with Qwen3's official chat template (read from the vocab GGUF) in the same
environment Hugging Face's apply_chat_template uses (ImmutableSandboxedEnvironment with
trim_blocks/lstrip_blocks, tojson = json.dumps(ensure_ascii=False)). This harness reproduces all
16 official renders byte for byte (checked below) before writing anything.

usage: gen_extra_cases.py CASES_IN.json OUT.json   (CASES_IN: same entries without "rendered")
"""
import json
import struct
import sys

from jinja2.sandbox import ImmutableSandboxedEnvironment

TESTDATA = __file__.rsplit('/tests/', 1)[0] + '/../shared/testdata'


def load_template():
    data = open(f'{TESTDATA}/models/qwen3-vocab.gguf', 'rb').read()
    key = b'tokenizer.chat_template'
    at = data.find(key) + len(key)
    (length,) = struct.unpack_from('<Q', data, at + 4)  # after the u32 value type
    return data[at + 12:at + 12 + length].decode()


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
env.filters['tojson'] = tojson
template = env.from_string(load_template())


def render(case):
    return template.render(messages=case['messages'],
                           add_generation_prompt=case.get('add_generation_prompt', False),
                           **case.get('kwargs', {}))


official = json.load(open(f'{TESTDATA}/refs/chat-template-cases.json'))
assert all(render(c) == c['rendered'] for c in official), 'harness does not match the reference'
cases = json.load(open(sys.argv[1]))
for c in cases:
    c['rendered'] = render(c)
json.dump(cases, open(sys.argv[2], 'w'), ensure_ascii=False, indent=1)
