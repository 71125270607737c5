# The function image. `fn build` and `fn deploy` use this file (func.yaml: `runtime: docker`; fnproject/cli
# common/common.go: a Dockerfile beside func.yaml is used as is). It is the Dockerfile the fn CLI generates
# for `runtime: python` (as Oracle's "About Deploying Default Builds" shows it; fnproject/cli
# langs/python.go), with two additions for the cold start (docs/performance.md):
# - the function's own bytecode, compiled at build time: a function container can write only /tmp, so
#   without it Python compiles func.py and genai_handler again in every new container;
# - an entrypoint that builds the client before the fdk listens (genai_handler/warm.py), so a container
#   started ahead of traffic answers its first call like a warm one.
FROM fnproject/python:3.12-dev AS build-stage
WORKDIR /function
ADD requirements.txt /function/
RUN pip3 install --target /python/ --no-cache --no-cache-dir -r requirements.txt && \
    rm -fr ~/.cache/pip /tmp* requirements.txt func.yaml Dockerfile .venv && \
    chmod -R o+r /python
ADD . /function/
RUN rm -fr /function/.pip_cache /function/Dockerfile* /function/func.yaml /function/requirements.txt
# checked-hash: a .pyc is used while its source's hash matches, whatever the files' times after COPY.
# python3.12, not python3: the image's Python is python3.12 (as the fn CLI's own debug entrypoint runs it,
# fnproject/cli langs/python.go DebugEntrypoint); python3 may be the base OS's, whose bytecode would not serve.
RUN python3.12 -m compileall -q --invalidation-mode checked-hash /function

FROM fnproject/python:3.12
WORKDIR /function
COPY --from=build-stage /python /python
COPY --from=build-stage /function /function
RUN chmod -R o+r /function
ENV PYTHONPATH=/function:/python
ENTRYPOINT ["python3.12", "-m", "genai_handler.warm", "/function/func.py", "handler"]
