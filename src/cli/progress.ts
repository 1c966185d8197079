import cliProgress from 'cli-progress'

export interface Progress {
  update: (progress: { closed: number; total: number; batches: number }) => void
  stop: () => void
}

/** A bar on stderr when a person is watching; nothing at all in pipes, cron and --json. */
export function progressBar(enabled: boolean): Progress {
  if (!enabled || !process.stderr.isTTY) return { update: () => undefined, stop: () => undefined }
  let bar: cliProgress.SingleBar | undefined
  return {
    update({ closed, total, batches }) {
      if (!bar) {
        bar = new cliProgress.SingleBar(
          {
            stream: process.stderr,
            format: 'closing [{bar}] {value}/{total} sessions, {batches} batches, {eta_formatted} left',
            hideCursor: true,
          },
          cliProgress.Presets.shades_classic,
        )
        bar.start(total, 0, { batches })
      }
      bar.setTotal(Math.max(total, closed))
      bar.update(closed, { batches })
    },
    stop() {
      bar?.stop()
    },
  }
}
