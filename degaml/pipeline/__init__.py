"""The whole experiment from one command (`degaml run`) and its report (`degaml report`)."""
