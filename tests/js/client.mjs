// The official ollama JavaScript client against a Gleitzeit gateway: chat, streamed generate,
// embed and list. Prints one JSON object with what each call returned; the Python test
// (tests/gateway/test_js_client.py) starts the gateway and checks it.
import { Ollama } from 'ollama'

const host = process.argv[2]
if (!host) {
  console.error('usage: node client.mjs http://127.0.0.1:PORT')
  process.exit(2)
}
const client = new Ollama({ host })

const chat = await client.chat({
  model: 'llama3.2',
  messages: [{ role: 'user', content: 'why is the sky blue?' }],
})
const parts = []
for await (const part of await client.generate({
  model: 'llama3.2',
  prompt: 'why is the sky blue?',
  stream: true,
})) {
  parts.push({ response: part.response, done: part.done })
}
const embedded = await client.embed({ model: 'nomic-embed-text', input: ['one', 'two'] })
const listed = await client.list()
let missing = null
try {
  await client.chat({ model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }] })
} catch (error) {
  missing = { status: error.status_code, message: error.error }
}

console.log(
  JSON.stringify({
    chat: { content: chat.message.content, done: chat.done, eval_count: chat.eval_count },
    stream: parts,
    embed: embedded.embeddings.map((vector) => vector.length),
    list: listed.models.map((model) => model.name),
    missing,
  }),
)
