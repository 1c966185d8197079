// Exit 0 when a PostgreSQL server answers at the URL given (or the machine default), 1 otherwise.
// CI uses it to decide whether to run the suite a second time against the machine's own server.
import pg from 'pg'

const url = process.argv[2] ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 })
try {
  await client.connect()
  const { rows } = await client.query('SHOW server_version')
  console.log(`PostgreSQL ${rows[0].server_version} reachable`)
  await client.end()
  process.exit(0)
} catch (error) {
  console.log(`no usable PostgreSQL at ${url.replace(/:[^:@/]*@/, ':*****@')}: ${error.message || error.code}`)
  process.exit(1)
}
