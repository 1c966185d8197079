/** The mock LLM's routes (`warden mock-llm`): the Messages API and its own books. */
export const MOCK_LLM_ROUTES = {
  messages: { method: 'POST', path: '/v1/messages' },
  healthz: { method: 'GET', path: '/healthz' },
  stats: { method: 'GET', path: '/_mock/stats' },
  calls: { method: 'GET', path: '/_mock/calls' },
} as const
