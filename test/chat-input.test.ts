import { describe, expect, it } from 'vitest'
import { createSession, expectError, rows, say, uniqueId, useChatHarness } from './helpers/chat.js'

const chat = useChatHarness('chat_input')

const post = (url: string, body: string) => fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/json' } })

describe('chat input: malformed requests', () => {
  it('malformed JSON, missing or oversized messages and bad ids get the stable error body', async () => {
    const h = await chat.start()
    const id = await createSession(h)
    const malformed = await post(`${h.server.chatUrl}/sessions/${id}/messages`, '{"message": "unterminated')
    expect(malformed.status).toBe(400)
    expect(await malformed.json()).toEqual({ error: { code: 'invalid_json', message: expect.any(String) } })
    expectError(await h.api.request('POST', `sessions/${id}/messages`, {}), 400, 'invalid_request')
    expectError(await h.api.request('POST', `sessions/${id}/messages`, { message: '   ' }), 400, 'invalid_request')
    expectError(await h.api.request('POST', `sessions/${id}/messages`, { message: 42 }), 400, 'invalid_request')
    expectError(await h.api.request('POST', `sessions/${id}/messages`, ['not', 'an', 'object']), 400, 'invalid_request')
    expectError(await say(h, id, 'x'.repeat(32 * 1024 + 1)), 413, 'message_too_large')
    expectError(await say(h, id, 'é'.repeat(16 * 1024 + 1)), 413, 'message_too_large')
    const huge = await post(`${h.server.chatUrl}/sessions/${id}/messages`, JSON.stringify({ message: 'y'.repeat(200_000) }))
    expect(huge.status).toBe(413)
    expect(await huge.json()).toMatchObject({ error: { code: 'payload_too_large' } })
    expectError(await h.api.request('POST', 'sessions', { id: 12 }), 400, 'invalid_request')
    expectError(await h.api.request('POST', 'sessions', { id: 'x'.repeat(201) }), 400, 'invalid_request')
    expectError(await h.api.request('POST', 'sessions', { owner: '' }), 400, 'invalid_request')
    const notFound = await h.api.request('GET', 'nothing-here')
    expect(notFound.status).toBe(404)
    expect(await rows(h, 'SELECT count(*)::int AS n FROM warden.chat_messages WHERE session_id = $1', [id])).toEqual([{ n: 0 }])
    expect(await rows(h, 'SELECT count(*)::int AS n FROM warden.llm_requests WHERE session_id = $1', [id])).toEqual([{ n: 0 }])
    expect(h.mock.stats().requests).toBe(0)
  })
})

describe('chat input: text PostgreSQL cannot store is refused before anything happens', () => {
  // NUL cannot be stored in text or jsonb; a lone UTF-16 surrogate has no UTF-8 form (the driver
  // would silently store U+FFFD instead, a different id). Both must be refused with a 400 that
  // names the field, before the LLM is called (so no billed call can lose its row over them).
  const BAD = { nul: 'before\u0000after', 'lone high surrogate': 'x\ud83d', 'lone low surrogate': '\ude00y' }

  for (const [what, text] of Object.entries(BAD)) {
    it(`a message with a ${what} is a 400 naming "message"; the LLM is not called and nothing is written`, async () => {
      const h = await chat.start()
      const id = await createSession(h)
      for (const reply of [
        await say(h, id, text),
        await h.api.request('POST', `sessions/${id}/messages/stream`, { message: text }, true),
      ]) {
        expectError(reply, 400, 'invalid_request')
        expect(reply.body.error.message).toMatch(/^message: /)
        expect(reply.body.error.message).toMatch(what === 'nul' ? /NUL/ : /surrogate/)
      }
      expect(h.mock.stats().requests).toBe(0)
      expect(await rows(h, 'SELECT turn_count FROM warden.chat_sessions WHERE id = $1', [id])).toEqual([{ turn_count: 0 }])
      expect(await rows(h, 'SELECT count(*)::int AS n FROM warden.chat_messages WHERE session_id = $1', [id])).toEqual([{ n: 0 }])
      // and the session still works
      expect((await say(h, id, 'plain text')).status).toBe(200)
    })

    it(`an id, owner or agentRole with a ${what} is a 400 naming the field, and no session is created`, async () => {
      const h = await chat.start()
      for (const field of ['id', 'owner', 'agentRole']) {
        const reply = await h.api.request('POST', 'sessions', { [field]: `${uniqueId('bad')}${text}` })
        expectError(reply, 400, 'invalid_request')
        expect(reply.body.error.message).toMatch(new RegExp(`^${field}: `))
      }
      expect(await rows(h, 'SELECT count(*)::int AS n FROM warden.chat_sessions WHERE server_id = $1', [h.server.router.serverId])).toEqual(
        [{ n: 0 }],
      )
    })
  }

  it('an id in the path that is not percent-encoded UTF-8 (an encoded surrogate) or holds a NUL is a 400 naming the path', async () => {
    const h = await chat.start()
    for (const raw of ['%ED%A0%80', 'a%00b']) {
      for (const [method, path] of [
        ['GET', `sessions/${raw}`],
        ['POST', `sessions/${raw}/messages`],
        ['POST', `sessions/${raw}/end`],
      ] as const) {
        const response = await fetch(`${h.server.chatUrl}/${path}`, {
          method,
          ...(method === 'POST' ? { body: JSON.stringify({ message: 'hi' }), headers: { 'content-type': 'application/json' } } : {}),
        })
        expect(response.status, `${method} ${path}`).toBe(400)
        const body = (await response.json()) as { error: { code: string; message: string } }
        expect(body.error.code).toBe('invalid_request')
        expect(body.error.message).toMatch(/^path id: /)
      }
    }
    expect(h.mock.stats().requests).toBe(0)
  })
})
