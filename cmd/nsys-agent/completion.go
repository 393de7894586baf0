package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

func completionCommand() *cli.Command {
	return clientCommand(&cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script (bash, zsh or fish)",
		ArgsUsage: "SHELL",
		Description: `Prints a script that completes nsys-agent's commands and flags in your shell. Load it
now, or from your shell's start-up file:

   nsys-agent completion bash > ~/.local/share/bash-completion/completions/nsys-agent
   nsys-agent completion zsh > "${fpath[1]}/_nsys-agent"
   nsys-agent completion fish > ~/.config/fish/completions/nsys-agent.fish

bash and zsh ask nsys-agent itself what comes next, so they follow the binary on your
PATH; fish's script lists the commands and flags of this binary.`,
		Action: func(c *cli.Context) error {
			pos, err := positional(c, 1, 1, "one SHELL (bash, zsh or fish)")
			if err != nil {
				return err
			}
			switch pos[0] {
			case "bash":
				fmt.Fprint(c.App.Writer, bashCompletion)
			case "zsh":
				fmt.Fprint(c.App.Writer, zshCompletion)
			case "fish":
				script, err := c.App.ToFishCompletion()
				if err != nil {
					return fmt.Errorf("completion fish: %w", err)
				}
				fmt.Fprint(c.App.Writer, script)
			default:
				return usagef("completion: %q: want bash, zsh or fish", pos[0])
			}
			return nil
		},
	})
}

// bashCompletion asks the binary (urfave/cli's --generate-bash-completion) for the words
// that may follow; it needs nothing from the bash-completion package.
const bashCompletion = `# bash completion for nsys-agent: source <(nsys-agent completion bash)
_nsys_agent_complete() {
  local cur="${COMP_WORDS[COMP_CWORD]}"
  local -a words=("${COMP_WORDS[@]:0:COMP_CWORD}")
  local opts
  if [[ "$cur" == -* ]]; then
    opts=$("${words[@]}" "$cur" --generate-bash-completion 2>/dev/null)
  else
    opts=$("${words[@]}" --generate-bash-completion 2>/dev/null)
  fi
  COMPREPLY=($(compgen -W "${opts}" -- "${cur}"))
}
complete -o bashdefault -o default -F _nsys_agent_complete nsys-agent
`

const zshCompletion = `#compdef nsys-agent
# zsh completion for nsys-agent: source <(nsys-agent completion zsh)
_nsys_agent() {
  local -a opts
  local cur=${words[-1]}
  if [[ "$cur" == -* ]]; then
    opts=("${(@f)$(${words[@]:0:#words[@]-1} ${cur} --generate-bash-completion 2>/dev/null)}")
  else
    opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
  fi
  if [[ "${opts[1]}" != "" ]]; then
    _describe 'values' opts
  else
    _files
  fi
}
compdef _nsys_agent nsys-agent
`
