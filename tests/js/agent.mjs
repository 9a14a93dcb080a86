// Drives the official supabase-js client for tests/test_local_js.py and tests/test_local_supabase.py.
// usage: node agent.mjs <project url> <key> <vsn>
// Reads one JSON command per line on stdin, prints one JSON event per line on stdout.
import { createClient } from '@supabase/supabase-js'
import WebSocket from 'ws'
import readline from 'node:readline'

const [url, key, vsn] = process.argv.slice(2)
const supabase = createClient(url, key, {
  realtime: { transport: WebSocket, vsn, heartbeatIntervalMs: 5000 },
})
const channels = new Map()
const emit = (event) => process.stdout.write(JSON.stringify(event) + '\n')

const commands = {
  subscribe({ name, config = {}, changes = [], presence = false }) {
    const channel = supabase.channel(name, { config })
    for (const change of changes) {
      channel.on('postgres_changes', change, (payload) =>
        emit({ type: 'postgres_changes', channel: name, payload }))
    }
    channel.on('broadcast', { event: '*' }, (payload) => emit({ type: 'broadcast', channel: name, payload }))
    channel.on('system', {}, (payload) => emit({ type: 'system', channel: name, payload }))
    if (presence) {
      channel.on('presence', { event: 'sync' }, () =>
        emit({ type: 'presence', channel: name, state: channel.presenceState() }))
    }
    channel.subscribe((status, err) =>
      emit({ type: 'status', channel: name, status, error: err ? String(err.message || err) : null }))
    channels.set(name, channel)
  },
  async send({ name, event, payload }) {
    const result = await channels.get(name).send({ type: 'broadcast', event, payload })
    emit({ type: 'sent', channel: name, result })
  },
  async httpSend({ name, event, payload }) {
    try {
      const result = await channels.get(name).httpSend(event, payload)
      emit({ type: 'httpSent', channel: name, result })
    } catch (err) {
      emit({ type: 'httpSent', channel: name, error: String(err.message || err) })
    }
  },
  async track({ name, payload }) {
    emit({ type: 'tracked', channel: name, result: await channels.get(name).track(payload) })
  },
  async signUp({ email, password }) {
    const { data, error } = await supabase.auth.signUp({ email, password })
    emit({ type: 'signedUp', user: data.user, error: error ? String(error.message || error) : null })
  },
  async insert({ table, row }) {
    const { data, error } = await supabase.from(table).insert(row).select()
    emit({ type: 'inserted', rows: data, error: error ? String(error.message || error) : null })
  },
  async update({ table, id, row }) {
    const { data, error } = await supabase.from(table).update(row).eq('id', id).select()
    emit({ type: 'updated', rows: data, error: error ? String(error.message || error) : null })
  },
  async exit() {
    await supabase.removeAllChannels()
    process.exit(0)
  },
}

const lines = readline.createInterface({ input: process.stdin })
lines.on('line', async (line) => {
  const command = JSON.parse(line)
  try {
    await commands[command.cmd](command)
  } catch (err) {
    emit({ type: 'error', command: command.cmd, error: String(err.stack || err) })
  }
})
lines.on('close', () => process.exit(0))
emit({ type: 'ready' })
