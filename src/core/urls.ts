/**
 * Connection URLs and the secrets in them, in one place: how Warden checks a database URL, and how
 * any URL or text is made safe to print, log or return.
 */

const MASK = '*****'

/** Query-string and key/value names whose values are credentials wherever they appear. */
const SECRET_NAMES =
  /^(password|passwd|pwd|pass|token|access_token|refresh_token|id_token|api[_-]?key|apikey|key|secret|client_secret|auth|authorization|jwt|signature|sig|credentials?|sslpassword)$/i

export const isSecretName = (name: string): boolean => SECRET_NAMES.test(name)

/** The password a connection URL carries, if any: a value the logs must never show. */
export function passwordOf(url: string | undefined): string | undefined {
  if (!url) return undefined
  try {
    const parsed = new URL(url)
    return (parsed.password ? decodeURIComponent(parsed.password) : undefined) ?? parsed.searchParams.get('password') ?? undefined
  } catch {
    return undefined
  }
}

/** Redacts the password of a connection URL so it can be printed or logged. */
export function redactUrl(url: string | undefined): string {
  if (!url) return '(PG* environment defaults)'
  try {
    const parsed = new URL(url)
    if (parsed.password) parsed.password = MASK
    // pg, like libpq, also takes the password as a query parameter
    for (const name of [...parsed.searchParams.keys()]) if (isSecretName(name)) parsed.searchParams.set(name, MASK)
    return parsed.toString()
  } catch {
    return redactText(url)
  }
}

/**
 * Masks credentials inside free text: URL user:password@, `password=…` key/value pairs (libpq's
 * `host=… password='a b'` form included) and credential-named query parameters.
 */
export function redactText(text: string): string {
  return text
    .replace(/(\/\/[^\s:@/"']*:)[^\s@"']*@/g, `$1${MASK}@`)
    .replace(/(\b(?:password|passwd|pwd|sslpassword)\s*=\s*)('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^\s&"']*)/gi, `$1${MASK}`)
    .replace(/([?&])([A-Za-z_-]+)=([^&#\s"']*)/g, (whole, sep: string, name: string) =>
      isSecretName(name) ? `${sep}${name}=${MASK}` : whole,
    )
}

/** A request path for the log: credential-named query values masked, whatever the route. */
export function redactRequestPath(path: string): string {
  const query = path.indexOf('?')
  if (query < 0) return path
  return (
    path.slice(0, query + 1) +
    path
      .slice(query + 1)
      .split('&')
      .map((pair) => {
        const eq = pair.indexOf('=')
        if (eq < 0) return pair
        let name = pair.slice(0, eq)
        try {
          name = decodeURIComponent(name)
        } catch {
          // keep it as sent
        }
        return isSecretName(name) ? `${pair.slice(0, eq)}=${MASK}` : pair
      })
      .join('&')
  )
}

const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full', 'no-verify']
const ENCODING_HINT = 'percent-encode special characters in the user name and password (/ as %2F, @ as %40, : as %3A, # as %23, ? as %3F)'

/**
 * Why a database URL cannot be used, or undefined when it can. Checked when the configuration is
 * loaded, so a bad URL is a configuration error with a message, not a driver error at connect time.
 */
export function databaseUrlProblem(value: string): string | undefined {
  const text = value.trim()
  if (/^[A-Za-z_]+\s*=/.test(text)) {
    return 'a key/value connection string (host=… dbname=…) is not supported: give a URL such as postgres://user:password@host:5432/dbname'
  }
  if (!/^(postgres|postgresql):\/\//i.test(text) && !/^socket:/i.test(text)) {
    return 'expected a postgres:// or postgresql:// URL, e.g. postgres://user:password@host:5432/dbname'
  }
  if (/^socket:/i.test(text)) return undefined
  const authority = /^[a-z]+:\/\/([^/?#]*)/i.exec(text)?.[1] ?? ''
  const rest = text.slice(text.indexOf(authority) + authority.length)
  let parsed: URL
  try {
    parsed = new URL(text)
  } catch {
    if (!authority.includes('@') && /^[^?#]*@/.test(rest))
      return `not a valid URL: the user name or password seems to contain "/" or "#"; ${ENCODING_HINT}`
    const port = /:([^:@\]]*)$/.exec(authority.slice(authority.lastIndexOf('@') + 1))?.[1]
    if (port !== undefined && port !== '' && !(/^\d+$/.test(port) && Number(port) >= 1 && Number(port) <= 65535)) {
      return `port ${JSON.stringify(port)} is not a port number (expected 1 to 65535)`
    }
    return `not a valid URL; ${ENCODING_HINT}`
  }
  if (parsed.port === '0') return 'port 0 is not a port number (expected 1 to 65535)'
  const sslmode = parsed.searchParams.get('sslmode')
  if (sslmode !== null && !SSL_MODES.includes(sslmode)) return `sslmode=${sslmode} is not one of ${SSL_MODES.join(', ')}`
  return undefined
}

/** A host name or address to listen on: names and IPv4/IPv6 literals, nothing with spaces or schemes. */
export function hostProblem(value: string): string | undefined {
  if (/^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$/.test(value)) return undefined
  if (/^[0-9A-Fa-f:.]+$/.test(value) && value.includes(':')) return undefined
  return 'expected a host name or IP address to listen on, e.g. 127.0.0.1, 0.0.0.0 or ::'
}

/** An http(s) endpoint such as an LLM API base URL. */
export function httpUrlProblem(value: string): string | undefined {
  try {
    const parsed = new URL(value)
    if (parsed.protocol === 'http:' || parsed.protocol === 'https:') return undefined
    return `expected an http:// or https:// URL, not ${parsed.protocol}`
  } catch {
    return 'expected an http:// or https:// URL such as https://api.anthropic.com'
  }
}
