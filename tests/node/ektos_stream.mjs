// Streams a chat completion as Ektos documents it, with the official openai Node SDK.
// Usage: node ektos_stream.mjs BASE_URL API_KEY MODEL
import OpenAI from "openai";

const [baseURL, apiKey, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });

const stream = await client.chat.completions.create({
  model,
  messages: [{ role: "user", content: "What is the capital of France?" }],
  temperature: 0,
  max_tokens: 32,
  stream: true,
  stream_options: { include_usage: true },
});

let text = "";
let finish = null;
let usage = null;
let role = null;
for await (const chunk of stream) {
  const choice = chunk.choices[0];
  if (choice?.delta?.role) role = choice.delta.role;
  text += choice?.delta?.content || "";
  if (choice?.finish_reason) finish = choice.finish_reason;
  if (chunk.usage) usage = chunk.usage;
}
console.log(JSON.stringify({ role, text, finish, usage }));
