# Sourced by environments/run for the Jittor environment: the flags Jittor reads at import.
#
#   nvcc_path=""            no NVIDIA GPU here: keep Jittor off CUDA (with nvcc on PATH but no GPU,
#                           Jittor 1.3.11 fails at import otherwise). On a GPU machine CUDA stays on.
#   use_cutt=0 use_cutlass=0  on a GPU machine: these CUDA helpers are downloaded at first use,
#                           which fails offline; Jittor falls back to its own kernels.
#   cache_name=nlg          Jittor names its kernel cache after the git branch of the folder it is installed
#                           in (our checkout), so every branch or worktree would compile its kernels anew
#                           (about 6 minutes); one name shares them.
#   oneDNN                  Jittor downloads a oneDNN 2.2 tarball at import. We give it Debian's
#                           libdnnl-dev instead, in the folder it would have unpacked into; when that
#                           cannot be had, use_mkl=0 (slow CPU matmuls) with a warning.
# Any of these already set in the caller's environment wins.

export cache_name=${cache_name-nlg}

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  export use_cutt=${use_cutt-0} use_cutlass=${use_cutlass-0}
else
  export nvcc_path=${nvcc_path-}
fi

if [ -z "${use_mkl+x}" ]; then
  # ldconfig lives in /sbin, which a minimal PATH may leave out
  dnnl_lib=$({ PATH=$PATH:/usr/sbin:/sbin ldconfig -p 2>/dev/null || true; } \
    | awk '$1 == "libdnnl.so" && !found {print $NF; found = 1}')
  if [ -n "$dnnl_lib" ] && [ -f /usr/include/dnnl.h ]; then
    dnnl_home=${JITTOR_HOME:-$HOME}/.cache/jittor/mkl/dnnl_lnx_2.2.0_cpu_gomp
    mkdir -p "$dnnl_home/lib" "$dnnl_home/include"
    ln -sfn "$dnnl_lib" "$dnnl_home/lib/libmkldnn.so"
    for header in /usr/include/dnnl*.h* /usr/include/oneapi; do
      ln -sfn "$header" "$dnnl_home/include/$(basename "$header")"
    done
  else
    echo "environments/run: WARNING oneDNN (Debian libdnnl-dev) not found: Jittor runs with" \
      "use_mkl=0, its CPU matmuls about 15x slower. Install libdnnl-dev to fix." >&2
    export use_mkl=0
  fi
fi
