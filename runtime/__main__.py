"""python -m vae_edge.runtime COMMAND [OPTIONS]: the console scripts (vae-sample, vae-encode, vae-decode, vae-info,
vae-score) for where their shebang cannot run, e.g. a package copied to another machine or run by an emulated
Python."""
import sys

from . import cli, score_cli

NAMES = {"sample": cli.sample_main, "encode": cli.encode_main, "decode": cli.decode_main, "info": cli.info_main,
         "score": score_cli.score_main}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in NAMES:
        print(f"usage: python -m vae_edge.runtime {{{','.join(NAMES)}}} [OPTIONS]  (COMMAND --help for each)",
              file=sys.stderr)
        sys.exit(2)
    name = sys.argv.pop(1)
    sys.argv[0] = f"vae-{name}"
    NAMES[name]()


if __name__ == "__main__":
    main()
