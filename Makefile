# The two commands a fresh machine needs: `make demo` (the main job) and `make test`.
.PHONY: demo plan-demo test deps lint typecheck unit bench clean

VENV := .venv/bin

deps:
	bash scripts/install-deps.sh

demo: deps
	bash scripts/demo.sh

plan-demo: deps
	$(VENV)/capstan plan -f examples/ha.yaml --out out/

lint: deps
	$(VENV)/ruff check src tests bench
	$(VENV)/ruff format --check src tests bench

typecheck: deps
	$(VENV)/mypy

# pytest exits 5 when it collects nothing; make treats that as a failure, as it should.
# Three test processes (pytest-xdist), a file each at a time: lab tests mostly wait on their hosts'
# services and kubeadm, so three share two cores well; every lab and Prefect server is per process.
test: lint typecheck
	$(VENV)/pytest -q -n 3 --dist loadfile --durations=30

unit: deps
	$(VENV)/pytest -q tests/unit

bench: deps
	$(VENV)/python bench/lab_bench.py

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
