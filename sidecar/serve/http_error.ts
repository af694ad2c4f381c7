/**
 * An error a request caused, with its HTTP status: what the client sent or asked for is wrong (4xx), or the
 * server cannot take it now (503). The message is one line that says what and what to do.
 */
export class HttpError extends Error {
  constructor(readonly statusCode: number, message: string, readonly code = 'invalid_request_error') {
    super(message);
    this.name = 'HttpError';
  }
}
