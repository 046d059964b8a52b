# bench/lib.sh: shell functions the bench scripts share; source it after
# cd to the repository root.

# free_port: a loopback TCP port nothing listens on, below the ephemeral
# range (32768–) so that no outgoing connection takes it meanwhile.
free_port() {
	local p
	for _ in $(seq 100); do
		p=$((20000 + RANDOM % 12000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	echo "no free port" >&2
	return 1
}
