# For DuckDB's CMake-based extension tooling (extension-ci-tools, a DuckDB source build with this repo as an out-of-tree extension); the Rust build (make) does not read it.
duckdb_extension_load(ai_batch
    SOURCE_DIR ${CMAKE_CURRENT_LIST_DIR}
    LOAD_TESTS
)
