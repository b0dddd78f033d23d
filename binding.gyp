{
  "targets": [
    {
      "target_name": "tsvisor",
      "sources": ["native/tsvisor.c"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-O2"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
