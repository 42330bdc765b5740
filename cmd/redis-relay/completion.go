package main

import (
	"fmt"
	"io"

	"github.com/urfave/cli/v2"
)

// Shell completion: urfave/cli answers a command line ending in
// --generate-bash-completion with the words that may come next (commands,
// or flags after a "-"); these scripts ask it on every TAB.

const bashCompletion = `# redis-relay completion for bash. Load it in the current shell with
#   source <(redis-relay completion bash)
# or install it: redis-relay completion bash >/etc/bash_completion.d/redis-relay
_redis_relay_complete() {
	local cur=${COMP_WORDS[COMP_CWORD]}
	local -a args=("${COMP_WORDS[@]:1:COMP_CWORD-1}")
	[[ $cur == -* ]] && args+=("$cur")
	local words
	words=$("${COMP_WORDS[0]}" "${args[@]}" --generate-bash-completion 2>/dev/null)
	COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o bashdefault -o default -F _redis_relay_complete redis-relay
`

const zshCompletion = `# redis-relay completion for zsh, through zsh's bash completion layer:
#   source <(redis-relay completion zsh)
autoload -U +X compinit && compinit
autoload -U +X bashcompinit && bashcompinit
` + bashCompletion

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script (bash, zsh or fish)",
		ArgsUsage: "bash|zsh|fish",
		Action: func(c *cli.Context) error {
			return writeCompletion(c.App, c.App.Writer, c.Args().First())
		},
	}
}

func writeCompletion(app *cli.App, w io.Writer, shell string) error {
	switch shell {
	case "bash":
		_, err := io.WriteString(w, bashCompletion)
		return err
	case "zsh":
		_, err := io.WriteString(w, zshCompletion)
		return err
	case "fish":
		s, err := app.ToFishCompletion()
		if err != nil {
			return fmt.Errorf("fish completion: %w", err)
		}
		_, err = io.WriteString(w, s)
		return err
	}
	return fmt.Errorf("completion: %q is not bash, zsh or fish", shell)
}
