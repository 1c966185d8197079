import { CommandHelp, Help, type Command, type Interfaces } from '@oclif/core'

/**
 * oclif's help, minus one cost: it passes every string it prints (each flag, each line of a
 * description) through ejs, compiling each as a template, which is most of the time `--help`
 * takes beyond loading oclif (bench/startup). Only strings with a tag (the examples'
 * `<%= config.bin %>`) need it; the others come out of ejs unchanged, so they skip it.
 */
function renderTagsOnly(formatter: { render: (input: string) => string }): void {
  const render = formatter.render
  formatter.render = (input) => (input.includes('<%') ? render(input) : input)
}

class WardenCommandHelp extends CommandHelp {
  constructor(command: Command.Loadable, config: Interfaces.Config, opts: Interfaces.HelpOptions) {
    super(command, config, opts)
    renderTagsOnly(this)
  }
}

export default class WardenHelp extends Help {
  protected override CommandHelpClass = WardenCommandHelp

  constructor(config: Interfaces.Config, opts?: Partial<Interfaces.HelpOptions>) {
    super(config, opts)
    renderTagsOnly(this)
  }
}
